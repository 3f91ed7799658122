"""Benchmark of a running mailserv (``python -m bench.run``) and the black-box harness
(server subprocess, raw IMAP client, message factories) that the protocol tests share."""
