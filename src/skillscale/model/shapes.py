"""Model shapes and their exact parameter and FLOP counts, without importing torch.

The plan (and so every Snakefile parse, 5,000-cell grids included) needs only these counts;
importing torch costs seconds, so they live apart from the module in `decoder.py`, which
re-exports them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelShape:
    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int
    seq_len: int
    ffn_mult: float = 8 / 3  # SwiGLU hidden = ffn_mult * d_model, rounded up to 8

    @property
    def d_ff(self) -> int:
        return int(math.ceil(self.ffn_mult * self.d_model / 8) * 8)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


def param_counts(shape: ModelShape) -> dict[str, int]:
    """Parameters under each counting convention.

    - ``standard`` (Porian et al. 2024, the default N): every weight matrix that does work
      per token, output head included, input embedding lookup excluded. Norm gains count.
    - ``nonembed`` (Kaplan et al. 2020): also excludes the output head.
    - ``total``: every tensor in the module.
    """
    d, L, v = shape.d_model, shape.n_layers, shape.vocab_size
    attn = 4 * d * d
    mlp = 3 * d * shape.d_ff
    norms = 2 * d
    blocks = L * (attn + mlp + norms) + d  # + final norm
    head = v * d
    embed = v * d
    return {"standard": blocks + head, "nonembed": blocks, "total": blocks + head + embed}


def flops_per_token(shape: ModelShape) -> dict[str, float]:
    """Training FLOPs per token: ``approx`` = 6·N (N standard), ``exact`` adds attention.

    Exact = 3 × forward, forward = 2 × (matmul weights, head included) + attention scores and
    values: 2 · 2 · L · seq · d per token averaged over a causal sequence (no causal saving
    counted, as in Chinchilla's appendix F), norms and activations ignored.
    """
    n = param_counts(shape)["standard"]
    attn_fwd = 2 * 2 * shape.n_layers * shape.seq_len * shape.d_model
    return {"approx": 6.0 * n, "exact": 3.0 * (2.0 * n + attn_fwd)}
