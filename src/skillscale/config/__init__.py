"""Stage config: a study's YAML layers -> one mapping with every default filled in and every
type and range checked against the JSON schema (config/schema.yaml, shipped in the package
too). What a schema cannot say (keys that constrain each other, the grid, the sources, the
benchmarks) each stage checks, and skillscale.study puts the two together: load configs
through skillscale.study.load. Every error names the key, the bad value and what was expected.
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
    """A copy of ``cfg`` with every default filled in, checked against the schema only
    (skillscale.study.validate adds the checks across keys and stages)."""
    cfg = copy.deepcopy(cfg or {})
    sch = schema()
    _fill_defaults(cfg, sch)
    cfg = _coerce_numbers(cfg, sch)
    errors = sorted(jsonschema.Draft202012Validator(sch).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties":
                allowed = sorted(_subschema(sch, list(e.absolute_schema_path)[:-1]).get("properties", {}))
                for k in sorted(set(e.instance) - set(allowed)):
                    lines.append(f"{_key([*e.path, k])}: unknown key; allowed keys here: {', '.join(allowed)}")
            else:
                expected = _subschema(sch, list(e.absolute_schema_path)[:-1]).get("description", "")
                lines.append(f"{_key(e.path)}: {e.message}" + (f" (expected: {expected})" if expected else ""))
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(lines))
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
        if isinstance(node, dict) and p in node or isinstance(node, list) and isinstance(p, int):
            node = node[p]
    return node if isinstance(node, dict) else {}


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


# top-level keys that change no number a study reports (how jobs are watched: live tracking)
NOT_RESULTS = ("logging",)


def study_digest(cfg: dict) -> str:
    """The hash tables print as the study config that made them: every key but NOT_RESULTS,
    so that switching tracking on or off, or a config written before `logging` existed,
    leaves the tables as they were."""
    return digest({k: v for k, v in cfg.items() if k not in NOT_RESULTS})


def dump(cfg: dict) -> str:
    return "# validated study config with every default filled in (written by the Snakefile)\n" + yaml.safe_dump(
        cfg, sort_keys=False
    )
