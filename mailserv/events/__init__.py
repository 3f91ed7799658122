"""What the server tells the world around it: metrics (:mod:`mailserv.events.metrics`),
structured logs (:mod:`mailserv.events.logs`) and the changes in the mail store, told to
webhooks (:mod:`mailserv.events.sink`, :mod:`mailserv.events.webhooks`)."""
