"""Administration commands (the ``mailserv`` console script)."""
