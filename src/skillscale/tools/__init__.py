"""Tools beside the workflow: speed benchmarks (speed, speed_gpu, speed_prep), the cost plan
behind `skillscale plan --estimate`, export to transformers, sample corpora for tests,
and `skillscale fit` on any points file."""
