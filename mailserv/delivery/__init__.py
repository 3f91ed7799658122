"""Mail in from an MTA: the delivery core (:mod:`.deliver`) that the LMTP service
(:mod:`.lmtp`) and ``mailserv deliver`` both use."""
