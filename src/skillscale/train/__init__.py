"""Stage train: one cell (cosine) or one WSD trunk with its cooldowns, from the prepared
data to model.safetensors + train.json (and, in the same process, eval.json).
Entry point: `python -m skillscale.train`."""
