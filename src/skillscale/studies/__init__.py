"""Studies of studies: what other designs would buy (designs), whether small fits predict
larger budgets (extrapolate), WSD against cosine sweeps (sweepcompare), LR transfer across
the ladder (lrsweep). Each reads finished study folders; none is part of the workflow."""
