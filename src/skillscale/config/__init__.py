"""Load a study config, fill defaults from the schema, and check it before any job runs.

The JSON schema (config/schema.yaml, shipped in the package too) checks types and ranges;
`check_cross_fields` checks what a schema cannot say. Every error names the key, the bad
value and what was expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """A study config is wrong; the message names the key and what was expected."""


def schema() -> dict:
    text = resources.files("skillscale.config").joinpath("schema.yaml").read_text()
    return yaml.safe_load(text)


def _fill_defaults(node: dict, sch: dict) -> None:
    """Fill defaults depth-first (jsonschema validates but never fills)."""
    for key, sub in sch.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and "object" in (sub.get("type") or []):
            _fill_defaults(node[key], sub)
            extra = sub.get("additionalProperties")
            if isinstance(extra, dict) and "properties" in extra:  # a mapping of named entries
                for k, v in node[key].items():
                    if isinstance(v, dict) and k not in sub.get("properties", {}):
                        _fill_defaults(v, extra)


def _coerce_numbers(node, sch: dict):
    """YAML 1.1 reads 1e12 (no dot) as a string; accept it where the schema wants a number."""
    types = sch.get("type")
    types = types if isinstance(types, list) else [types]
    if isinstance(node, str) and ("number" in types or "integer" in types):
        try:
            num = float(node)
        except ValueError:
            return node
        return int(num) if "number" not in types and num.is_integer() else num
    if isinstance(node, dict):
        for k, sub in sch.get("properties", {}).items():
            if k in node:
                node[k] = _coerce_numbers(node[k], sub)
        extra = sch.get("additionalProperties")
        if isinstance(extra, dict):
            for k in node:
                if k not in sch.get("properties", {}):
                    node[k] = _coerce_numbers(node[k], extra)
    if isinstance(node, list) and isinstance(sch.get("items"), dict):
        return [_coerce_numbers(x, sch["items"]) for x in node]
    return node


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate(cfg: dict | None, source: str = "config") -> dict:
    """Return a validated copy of ``cfg`` with every default filled in."""
    cfg = copy.deepcopy(cfg or {})
    sch = schema()
    _fill_defaults(cfg, sch)
    cfg = _coerce_numbers(cfg, sch)
    errors = sorted(
        jsonschema.Draft202012Validator(sch).iter_errors(cfg), key=lambda e: list(e.path)
    )
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties":
                allowed = sorted(
                    _subschema(sch, list(e.absolute_schema_path)[:-1]).get("properties", {})
                )
                for k in sorted(set(e.instance) - set(allowed)):
                    lines.append(f"{_key([*e.path, k])}: unknown key; allowed keys here: {', '.join(allowed)}")
            else:
                expected = _subschema(sch, list(e.absolute_schema_path)[:-1]).get(
                    "description", ""
                )
                lines.append(
                    f"{_key(e.path)}: {e.message}" + (f" (expected: {expected})" if expected else "")
                )
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(lines))
    check_cross_fields(cfg, source)
    return _sorted_keys(cfg)


def _sorted_keys(node):
    """Mappings with their keys in sorted order, at every depth. Rules pass config sections
    to Snakemake as params, and Snakemake compares params by their text: without this, the
    same settings written in another order (a re-saved YAML file) would rerun the study."""
    if isinstance(node, dict):
        return {k: _sorted_keys(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted_keys(x) for x in node]
    return node


def _subschema(sch: dict, path) -> dict:
    node = sch
    for p in path:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int):
            node = node[p]
    return node if isinstance(node, dict) else {}


def check_cross_fields(cfg: dict, source: str = "config") -> None:
    problems = []
    budgets = cfg["grid"]["budgets"]
    if any(b2 <= b1 for b1, b2 in zip(budgets, budgets[1:])):
        problems.append(f"grid.budgets: {budgets} must be strictly increasing")
    fracs = cfg["mix"]["code_fractions"]
    if len(set(fracs)) != len(fracs):
        problems.append(f"mix.code_fractions: {fracs} has duplicates")
    if len(set(cfg["seeds"])) != len(cfg["seeds"]):
        problems.append(f"seeds: {cfg['seeds']} has duplicates")
    ladder = cfg["grid"]["ladder"]
    for i, s in enumerate(ladder):
        if s["d_model"] % s["n_heads"] or (s["d_model"] // s["n_heads"]) % 2:
            problems.append(
                f"grid.ladder.{i}: d_model={s['d_model']} must split into n_heads={s['n_heads']}"
                " heads of even width (rotary embeddings rotate pairs)"
            )
    if len({(s["d_model"], s["n_layers"], s["n_heads"]) for s in ladder}) != len(ladder):
        problems.append("grid.ladder: has duplicate shapes")
    if cfg["grid"]["sizes_per_budget"] > len(ladder):
        problems.append(
            f"grid.sizes_per_budget: {cfg['grid']['sizes_per_budget']} is more than the"
            f" {len(ladder)} shapes in grid.ladder"
        )
    rc = cfg["resources"]
    if cfg["train"]["batch_size"] % (rc["ddp_processes"] * rc["ddp_nodes"]):
        n = rc["ddp_processes"] * rc["ddp_nodes"]
        problems.append(f"resources.ddp_processes: {n} data-parallel processes ({rc['ddp_processes']} per node x"
                        f" resources.ddp_nodes={rc['ddp_nodes']}) must divide train.batch_size"
                        f" ({cfg['train']['batch_size']}): each takes an equal share of a batch")
    if not problems and (cfg["resources"]["pack"] or cfg["train"]["device"] == "cuda"):
        from skillscale.plan import memory_problems

        problems += memory_problems(cfg)
    if cfg["data"]["sources"] is not None:
        from skillscale.data.sources import config_problems

        problems += config_problems(cfg)
    kc, ev = cfg["data"]["knowledge"], cfg["data"]["eval"]
    from skillscale.data.corpora import QUESTIONS

    held_out_questions = (kc["n_facts"] - round(kc["qa_train_fraction"] * kc["n_facts"])) * len(QUESTIONS)
    if ev["knowledge_qa_items"] > held_out_questions:
        problems.append(
            f"data.eval.knowledge_qa_items: {ev['knowledge_qa_items']} asked for, but data.knowledge.n_facts="
            f"{kc['n_facts']} with qa_train_fraction={kc['qa_train_fraction']} leaves {held_out_questions}"
            " held-out questions; lower it or add facts"
        )
    from skillscale.benchmarks import SKILLS, config_problems

    problems += config_problems(cfg, SKILLS)
    if not problems:  # the grid itself, once the shapes are sound
        problems += _grid_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(problems))


def _grid_problems(cfg: dict) -> list[str]:
    """Every budget must keep >= 3 trainable sizes and expect its optimum inside the ladder."""
    import math

    from skillscale import plan

    out = []
    lad = plan.ladder(cfg)
    n_lo, n_hi = lad[0][2]["standard"], lad[-1][2]["standard"]
    cells, _ = plan.build(cfg)
    tpp = cfg["grid"]["tokens_per_param"]
    for b in cfg["grid"]["budgets"]:
        n_e = math.sqrt(b / (6 * tpp))
        if not n_lo <= n_e <= n_hi:
            out.append(
                f"grid.budgets: {b:.3g} expects its optimum near N={n_e:,.0f} (sqrt(C / (6 x grid.tokens_per_param)))"
                f" but grid.ladder spans N={n_lo:,}..{n_hi:,}; the IsoFLOP minimum could not be inside the sizes"
                " sampled — extend grid.ladder or change the budget"
            )
        sizes = {c.size for c in cells if c.budget == b}
        if len(sizes) < 3:
            out.append(
                f"grid.budgets: {b:.3g} keeps {len(sizes)} sizes with >= train.min_steps="
                f"{cfg['train']['min_steps']} steps (a parabola needs 3); raise the budget, lower"
                " train.min_steps or train.batch_size"
            )
    return out


def read_yaml(path: str | Path) -> dict:
    """One config file's mapping, or a ConfigError naming the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def load(path: str | Path, overrides: dict | None = None) -> dict:
    return validate(deep_merge(read_yaml(path), overrides or {}), str(path))


def load_layers(paths) -> dict:
    """Several config files merged in order (later keys win), then validated once: what
    snakemake does with `--configfile X` over the Snakefile's config/config.yaml."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    merged = {}
    for path in paths:
        merged = deep_merge(merged, read_yaml(path))
    return validate(merged, " + ".join(map(str, paths)))


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# train keys that do not change a model's trajectory: editing them retrains nothing and a
# resume checkpoint stays valid
NOT_TRAJECTORY = ("log_every", "checkpoint_seconds", "min_steps", "device", "compile")


def digest(obj) -> str:
    """Short stable hash of a JSON-able object (config sections, provenance)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def dump(cfg: dict) -> str:
    return "# validated study config with every default filled in (written by the Snakefile)\n" + yaml.safe_dump(cfg, sort_keys=False)
