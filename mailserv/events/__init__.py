"""What the server tells the world around it: metrics (:mod:`mailserv.events.metrics`) and
structured logs (:mod:`mailserv.events.logs`)."""
