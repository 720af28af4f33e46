"""``python -m adamjax``: the ``adamjax`` command line."""

from adamjax._cli import main

raise SystemExit(main())
