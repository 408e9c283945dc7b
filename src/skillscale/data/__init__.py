"""Stage data: corpora (embedded or configured sources) -> split -> tokenizer -> token shards
+ held-out eval sets in results/<study>/data/, once per study; and the per-cell mixing of
those shards into training sequences. Entry point: `python -m skillscale.data`."""
