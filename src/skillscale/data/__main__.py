"""`python -m skillscale.data`: prepare a study's data (see skillscale.data.embedded.main)."""

from skillscale.data.embedded import main

raise SystemExit(main())
