"""`python -m rtml` is the `rtml` command."""

from rtml.cli import main

raise SystemExit(main())
