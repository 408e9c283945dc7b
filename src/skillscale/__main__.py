"""`python -m skillscale VERB`: the `skillscale` command (see skillscale.cli)."""

from skillscale.cli import main

raise SystemExit(main())
