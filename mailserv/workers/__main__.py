"""``python -m mailserv.workers``: one worker process, started by the master."""

import sys

from mailserv.workers.child import main

sys.exit(main(sys.argv[1:]))
