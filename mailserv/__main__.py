"""``python -m mailserv``: the same as the ``mailserv`` console script."""

from mailserv.admin.cli import main

raise SystemExit(main())
