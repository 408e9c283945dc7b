"""The grid of cells: code fraction x budget x model size x seed.

For each budget C the plan trains a window of `sizes_per_budget` consecutive ladder shapes
centred (in log N) on the expected optimum N_e = sqrt(C / (6 * tokens_per_param)), so the
IsoFLOP minimum has sizes on both sides; D = C / (6 N). Cells whose run would take fewer
than `train.min_steps` optimizer steps are dropped and listed as such.

Under `train.schedule: wsd` (warmup-stable-decay, Hagele et al. 2024) the cells of one
(code fraction, size, seed) share a *stable run*: one constant-LR run as long as the
largest of them needs, from which each cell branches at step `steps - cooldown` and decays
over its last `cooldown_fraction` of tokens. `sweep_cost` says what that saves.
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


def build(cfg: dict) -> tuple[list[Cell], list[dict]]:
    """Return (cells to train, cells dropped with the reason)."""
    lad = ladder(cfg)
    tokens_per_step = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
    k = cfg["grid"]["sizes_per_budget"]
    cells, dropped = [], []
    for frac in cfg["mix"]["code_fractions"]:
        for budget in cfg["grid"]["budgets"]:
            idx = window([p["standard"] for _, _, p in lad], budget, k, cfg["grid"]["tokens_per_param"])
            for i in idx:
                name, shape, counts = lad[i]
                n = counts["standard"]
                steps = int(budget / (6 * n) // tokens_per_step)
                for seed in cfg["seeds"]:
                    cid = cell_id(frac, budget, name, seed)
                    if steps < cfg["train"]["min_steps"]:
                        dropped.append({"cell": cid, "reason": f"{steps} steps < train.min_steps={cfg['train']['min_steps']}"})
                        continue
                    tokens = steps * tokens_per_step
                    cells.append(
                        Cell(
                            cell=cid, code_frac=float(frac), budget=float(budget), size=name,
                            seed=int(seed), d_model=shape.d_model, n_layers=shape.n_layers,
                            n_heads=shape.n_heads, n_params=n,
                            n_params_nonembed=counts["nonembed"], n_params_total=counts["total"],
                            tokens=tokens, steps=steps, flops=6.0 * n * tokens,
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
class StableRun:
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


def run_id(cell: Cell) -> str:
    return f"code{cell.code_frac:.2f}_{cell.size}_seed{cell.seed}"


def stable_runs(cfg: dict, cells: list[Cell]) -> list[StableRun]:
    tokens_per_step = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(run_id(c), []).append(c)
    runs = []
    for rid, members in groups.items():
        branches = sorted(((c.cell, c.steps - cooldown_steps(cfg, c.steps)) for c in members), key=lambda b: b[1])
        c0 = members[0]
        steps = branches[-1][1]
        runs.append(StableRun(
            run=rid, code_frac=c0.code_frac, size=c0.size, seed=c0.seed, n_params=c0.n_params,
            steps=steps, warmup=warmup_steps(cfg, c0.n_params, min(c.steps for c in members)),
            branches=tuple(branches), flops=6.0 * c0.n_params * steps * tokens_per_step,
        ))
    return runs


def sweep_cost(cfg: dict, cells: list[Cell]) -> dict:
    """Training FLOPs (6ND) of the grid trained cell by cell vs as WSD trunks + cooldowns."""
    per_cell = sum(c.flops for c in cells)
    trunks = sum(r.flops for r in stable_runs(cfg, cells))
    cooldowns = sum(c.flops * cooldown_steps(cfg, c.steps) / c.steps for c in cells)
    return {"per_cell_flops": per_cell, "wsd_flops": trunks + cooldowns,
            "wsd_trunk_flops": trunks, "wsd_cooldown_flops": cooldowns,
            "wsd_over_per_cell": (trunks + cooldowns) / per_cell if per_cell else float("nan")}


def to_frame(cells: list[Cell]):
    import pandas as pd  # here, not at the top: every training job imports plan, none needs pandas

    return pd.DataFrame([asdict(c) for c in cells])


# -- packing small trunks into one job (resources.pack) ------------------------------------------
@dataclass(frozen=True)
class Pack:
    """WSD trunks of one size trained side by side in one job, one process each, on the job's
    one GPU (or train_threads CPU threads each)."""

    name: str
    runs: tuple[str, ...]
    size: str
    n_params: int


def ddp_processes(cfg: dict, n_params: int) -> int:
    """Data-parallel processes per node of a training job: resources.ddp_processes for
    models of at least resources.ddp_min_params parameters, else 1."""
    rc = cfg["resources"]
    return rc["ddp_processes"] if n_params >= rc["ddp_min_params"] else 1


def ddp_nodes(cfg: dict, n_params: int) -> int:
    """Nodes of a training job: resources.ddp_nodes for data-parallel sizes, else 1."""
    rc = cfg["resources"]
    return rc["ddp_nodes"] if n_params >= rc["ddp_min_params"] else 1


def ddp_world(cfg: dict, n_params: int) -> int:
    """All processes (GPUs) of a training job, over its nodes."""
    return ddp_processes(cfg, n_params) * ddp_nodes(cfg, n_params)


def per_job(cfg: dict, n_params: int) -> int:
    """How many trunks of this size one job trains side by side: the first resources.pack
    entry (by max_params) the size fits under, 1 for none; data-parallel sizes never pack."""
    rc = cfg["resources"]
    if ddp_world(cfg, n_params) > 1:
        return 1
    for entry in sorted(rc["pack"], key=lambda e: e["max_params"]):
        if n_params <= entry["max_params"]:
            return entry["per_job"]
    return 1


def packs(cfg: dict, runs: list[StableRun]) -> list[Pack]:
    """The trunks of each size, per_job at a time in (seed, code fraction) order: members of a
    pack have the same shape and steps, so none waits long for the others. A lone remainder
    trains as its own job."""
    if cfg["train"]["schedule"] != "wsd":
        return []
    by_size: dict[str, list[StableRun]] = {}
    for r in runs:
        by_size.setdefault(r.size, []).append(r)
    out = []
    for size, members in by_size.items():
        k = per_job(cfg, members[0].n_params)
        members = sorted(members, key=lambda r: (r.seed, r.code_frac))
        for i in range(0, len(members), k if k > 1 else len(members) + 1):
            chunk = members[i:i + k]
            if k > 1 and len(chunk) > 1:
                out.append(Pack(f"{size}_pack{i // k}", tuple(r.run for r in chunk), size, chunk[0].n_params))
    return out


def train_memory_bytes(cfg: dict, shape: ModelShape) -> float:
    """A CUDA training process's memory, roughly: the context and allocator slack (1 GiB),
    fp32 weights, gradients and AdamW's two moments (16 bytes a parameter), and for the
    rows of one forward/backward pass (resources.micro_batch_rows, or the process's share
    of the batch) the activations backward keeps, ~34 d_model values a token a layer
    (Korthikanti et al. 2022; flash attention keeps no seq_len^2 scores) at 2 bytes in
    bf16, 4 in fp32, plus the fp32 logits' three passes."""
    rc, tc = cfg["resources"], cfg["train"]
    rows = rc["micro_batch_rows"] or tc["batch_size"] // ddp_world(cfg, param_counts(shape)["standard"])
    tokens = rows * shape.seq_len
    act = tokens * shape.n_layers * 34 * shape.d_model * (4 if tc["precision"] == "fp32" else 2)
    return 2**30 + 16 * param_counts(shape)["total"] + act + 3 * tokens * shape.vocab_size * 4


def check_pack_fits(cfg: dict, runs: list[StableRun], device_bytes: float, key: str = "resources.pack") -> None:
    """Trunks sharing one GPU that need more than 90% of its memory are refused before any
    starts, naming their size and the memory they need."""
    cells, _ = build(cfg)
    shape = {c.size: c.shape(cfg) for c in cells}
    need = sum(train_memory_bytes(cfg, shape[r.size]) for r in runs)
    if need > 0.9 * device_bytes:
        what = (f"{len(runs)} trunks of {runs[0].size} side by side need" if len(runs) > 1
                else f"a trunk of {runs[0].size} needs")
        fix = (f"lower per_job for {runs[0].n_params:,} parameters" if len(runs) > 1
               else "set resources.micro_batch_rows (fewer rows per forward/backward pass) or resources.ddp_processes")
        raise ValueError(f"{key}: {what} about {need / 2**30:.1f} GiB, more than 90% of the GPU's"
                         f" {device_bytes / 2**30:.0f} GiB; {fix}")


def memory_problems(cfg: dict) -> list[str]:
    """At planning, for a study that trains on GPUs: jobs (a trunk alone, or a pack) that
    cannot fit resources.gpu_memory_gb; and packing without WSD."""
    rc = cfg["resources"]
    if rc["pack"] and cfg["train"]["schedule"] != "wsd":
        return ["resources.pack: packs WSD trunks (train.schedule: wsd); cosine cells train one per job"]
    if cfg["train"]["device"] != "cuda":
        return []  # CPU jobs: their memory is the node's (the rules' mem_mb)
    cells, _ = build(cfg)
    runs = {r.run: r for r in stable_runs(cfg, cells)}
    groups = [[runs[r] for r in p.runs] for p in packs(cfg, list(runs.values()))]
    packed = {r.run for g in groups for r in g}
    groups += [[r] for r in runs.values() if r.run not in packed]
    out = []
    for g in groups:
        key = "resources.pack" if len(g) > 1 else "resources.micro_batch_rows"
        try:
            check_pack_fits(cfg, g, rc["gpu_memory_gb"] * 2**30, key=f"{key} (against resources.gpu_memory_gb)")
        except ValueError as e:
            out.append(str(e))
    return sorted(set(out))
