"""`python -m skillscale.train`: train a cell, a trunk or a pack (see skillscale.train.jobs.main)."""

from skillscale.train.jobs import main

raise SystemExit(main())
