"""`python -m skillscale.data`: prepare a study's data (skillscale.data.prepare)."""

from skillscale.data.prepare import main

raise SystemExit(main())
