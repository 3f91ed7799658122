"""What happened in the mail store, told to whoever listens (webhooks, metrics)."""
