"""The grid of cells: code fraction x budget x model size x seed.

For each budget C the plan trains a window of `sizes_per_budget` consecutive ladder shapes
centred (in log N) on the expected optimum N_e = sqrt(C / (6 * tokens_per_param)), so the
IsoFLOP minimum has sizes on both sides; D = C / (6 N). Cells whose run would take fewer
than `train.min_steps` optimizer steps are dropped and listed as such.

Under `train.schedule: wsd` (warmup-stable-decay, Hagele et al. 2024) the cells of one
(code fraction, size, seed) share a *trunk*: one constant-LR run as long as the largest of
them needs, from which each cell branches at step `steps - cooldown` and decays over its
last `cooldown_fraction` of tokens. `job_flops` is a trunk job's compute (the trunk and its
cells' cooldowns); `sweep_cost` says what WSD saves over training cell by cell.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from skillscale.model.shapes import ModelShape, flops_per_token, param_counts


@dataclass(frozen=True)
class Cell:
    cell: str
    code_frac: float
    budget: float
    size: str
    seed: int
    d_model: int
    n_layers: int
    n_heads: int
    n_params: int  # standard convention (head included, input embedding excluded)
    n_params_nonembed: int
    n_params_total: int
    tokens: int  # D = C / (6 N), rounded down to whole optimizer steps
    steps: int
    flops: float  # 6 N D actually trained
    flops_exact: float  # with attention

    def shape(self, cfg: dict) -> ModelShape:
        return shape_of(cfg, self.d_model, self.n_layers, self.n_heads)


def shape_of(cfg: dict, d_model: int, n_layers: int, n_heads: int) -> ModelShape:
    return ModelShape(
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        vocab_size=cfg["data"]["tokenizer"]["vocab_size"],
        seq_len=cfg["model"]["seq_len"],
        ffn_mult=cfg["model"]["ffn_mult"],
    )


def size_name(s: dict) -> str:
    return f"d{s['d_model']}L{s['n_layers']}h{s['n_heads']}"


def cell_id(code_frac: float, budget: float, size: str, seed: int) -> str:
    return f"code{code_frac:.2f}_C{budget:.1e}_{size}_seed{seed}".replace("+", "")


def ladder(cfg: dict) -> list[tuple[str, ModelShape, dict]]:
    """Ladder shapes sorted by standard parameter count."""
    rows = []
    for s in cfg["grid"]["ladder"]:
        shape = shape_of(cfg, s["d_model"], s["n_layers"], s["n_heads"])
        rows.append((size_name(s), shape, param_counts(shape)))
    return sorted(rows, key=lambda r: r[2]["standard"])


def window(n_params: list[int], budget: float, k: int, tokens_per_param: float) -> range:
    """Indices of the k consecutive ladder sizes centred on the expected optimum."""
    n_e = math.sqrt(budget / (6 * tokens_per_param))
    centre = min(range(len(n_params)), key=lambda i: abs(math.log(n_params[i] / n_e)))
    lo = max(0, min(centre - k // 2, len(n_params) - k))
    return range(lo, lo + k)


def per_token(shape: ModelShape, n_params: int, accounting: str) -> float:
    """FLOPs one training token costs under grid.flops: 6 N, or the exact count with attention."""
    if accounting == "exact":
        return flops_per_token(shape)["exact"]
    if accounting == "6nd":
        return 6.0 * n_params
    raise ValueError(f"grid.flops: {accounting!r} is not one of 6nd, exact")


def build(cfg: dict) -> tuple[list[Cell], list[dict]]:
    """Return (cells to train, cells dropped with the reason)."""
    lad = ladder(cfg)
    tokens_per_step = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
    k = cfg["grid"]["sizes_per_budget"]
    accounting = cfg["grid"].get("flops", "6nd")  # absent: 6ND (see config/schema.yaml)
    cells, dropped = [], []
    for frac in cfg["mix"]["code_fractions"]:
        for budget in cfg["grid"]["budgets"]:
            idx = window([p["standard"] for _, _, p in lad], budget, k, cfg["grid"]["tokens_per_param"])
            for i in idx:
                name, shape, counts = lad[i]
                n = counts["standard"]
                steps = int(budget / per_token(shape, n, accounting) // tokens_per_step)
                for seed in cfg["seeds"]:
                    cid = cell_id(frac, budget, name, seed)
                    if steps < cfg["train"]["min_steps"]:
                        dropped.append(
                            {"cell": cid, "reason": f"{steps} steps < train.min_steps={cfg['train']['min_steps']}"}
                        )
                        continue
                    tokens = steps * tokens_per_step
                    cells.append(
                        Cell(
                            cell=cid,
                            code_frac=float(frac),
                            budget=float(budget),
                            size=name,
                            seed=int(seed),
                            d_model=shape.d_model,
                            n_layers=shape.n_layers,
                            n_heads=shape.n_heads,
                            n_params=n,
                            n_params_nonembed=counts["nonembed"],
                            n_params_total=counts["total"],
                            tokens=tokens,
                            steps=steps,
                            flops=6.0 * n * tokens,
                            flops_exact=flops_per_token(shape)["exact"] * tokens,
                        )
                    )
    return cells, dropped


def warmup_steps(cfg: dict, n_params: int, steps: int) -> int:
    """Warmup grows with the model (tokens = warmup_tokens_per_param x N), capped at 20% of the run."""
    tc = cfg["train"]
    tokens_per_step = tc["batch_size"] * cfg["model"]["seq_len"]
    return min(int(0.2 * steps), max(1, round(tc["warmup_tokens_per_param"] * n_params / tokens_per_step)))


def cooldown_steps(cfg: dict, steps: int) -> int:
    return max(1, round(cfg["train"]["cooldown_fraction"] * steps))


@dataclass(frozen=True)
class Trunk:
    """The constant-LR trunk shared by the cells of one (code fraction, size, seed) under WSD."""

    run: str
    code_frac: float
    size: str
    seed: int
    n_params: int
    steps: int  # the last branch point
    warmup: int
    branches: tuple[tuple[str, int], ...]  # (cell id, step it branches at), by step
    flops: float


def trunk_id(cell: Cell) -> str:
    """The trunk a cell branches from under WSD (the `run` wildcard of the trunk rules)."""
    return f"code{cell.code_frac:.2f}_{cell.size}_seed{cell.seed}"


def trunks(cfg: dict, cells: list[Cell]) -> list[Trunk]:
    tokens_per_step = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(trunk_id(c), []).append(c)
    runs = []
    for rid, members in groups.items():
        branches = sorted(((c.cell, c.steps - cooldown_steps(cfg, c.steps)) for c in members), key=lambda b: b[1])
        c0 = members[0]
        steps = branches[-1][1]
        runs.append(
            Trunk(
                run=rid,
                code_frac=c0.code_frac,
                size=c0.size,
                seed=c0.seed,
                n_params=c0.n_params,
                steps=steps,
                warmup=warmup_steps(cfg, c0.n_params, min(c.steps for c in members)),
                branches=tuple(branches),
                flops=6.0 * c0.n_params * steps * tokens_per_step,
            )
        )
    return runs


def sweep_cost(cfg: dict, cells: list[Cell]) -> dict:
    """Training FLOPs (6ND) of the grid trained cell by cell vs as WSD trunks + cooldowns."""
    per_cell = sum(c.flops for c in cells)
    trunk_flops = sum(r.flops for r in trunks(cfg, cells))
    cooldowns = sum(cooldown_flops(cfg, c) for c in cells)
    return {
        "per_cell_flops": per_cell,
        "wsd_flops": trunk_flops + cooldowns,
        "wsd_trunk_flops": trunk_flops,
        "wsd_cooldown_flops": cooldowns,
        "wsd_over_per_cell": (trunk_flops + cooldowns) / per_cell if per_cell else float("nan"),
    }


def cooldown_flops(cfg: dict, cell: Cell) -> float:
    """6ND of a cell's cooldown from its trunk's branch point (its last cooldown_fraction)."""
    return 6.0 * cell.n_params * cooldown_steps(cfg, cell.steps) * cfg["train"]["batch_size"] * cfg["model"]["seq_len"]


def job_flops(cfg: dict, trunk: Trunk, cells: dict[str, Cell]) -> float:
    """A trunk job's training FLOPs: the trunk, then each of its cells' cooldowns (the one
    place this is computed: the Slurm runtime request, the cost plan and sweep_cost agree)."""
    return trunk.flops + sum(cooldown_flops(cfg, cells[c]) for c, _ in trunk.branches)


def to_frame(cells: list[Cell]):
    import pandas as pd  # here, not at the top: every training job imports plan, none needs pandas

    return pd.DataFrame([asdict(c) for c in cells])
