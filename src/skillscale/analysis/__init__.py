"""Stage analysis: a study's finished cells in, its tables, summary.md and figures out.

Every cell's eval.json -> cells.csv (aggregate) -> fits (fit/) -> the paper's analyses
(skills) -> tables, claims, summary.md, figures (report). Entry point: `skillscale
analyze`; re-runnable alone from whatever cells exist."""
