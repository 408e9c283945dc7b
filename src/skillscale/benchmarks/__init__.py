"""Standard benchmarks (lm-eval tasks) as skill metrics, read from local mirrors.

`eval.benchmarks` in the config names shipped benchmarks and, optionally, the skill each
measures and where its data lies:

    eval:
      benchmarks:
        triviaqa: {mirror: /data/trivia_qa/rc.nocontext/validation.parquet}
        humaneval: {skill: code, mirror: /data/openai_humaneval, limit: 100}

Each benchmark is a task YAML in `skillscale/evaluate/tasks/benchmarks/` (the harness's own prompt,
our gold text and bits-per-byte scoring, see docs/benchmarks.md). Its `dataset_kwargs` say
which hub dataset, config and split the task reads and which fields it needs; `prepare`
loads the split from the mirror (a data file in the dataset's own schema, a folder written
by `datasets.save_to_disk`, or anything `datasets.load_dataset` takes: a local copy of the
hub repository, or the hub id itself when online), checks every document has the fields,
and writes `<out>/<benchmark>.jsonl` with a manifest. Every cell then scores exactly those
documents, offline.

    python -m skillscale.benchmarks --config results/<study>/config.yaml --out results/<study>/data/benchmarks
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import yaml

from skillscale import common

TASKS_DIR = Path(__file__).resolve().parents[1] / "evaluate" / "tasks" / "benchmarks"
SKILLS = ("knowledge", "code")  # the skills of a study: those of evaluate.METRICS
PREFIX = "bench:"  # cells.csv metric of a benchmark: bench:<name>; of a skill's pool: bench:<skill>
FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


class BenchmarkError(ValueError):
    """Bad benchmark config or mirror: names the key or file and what was expected."""


@cache
def shipped() -> dict[str, dict]:
    """Benchmark name -> the dataset_kwargs of its task YAML (plus 'task', its lm-eval name)."""

    class Loader(yaml.SafeLoader):  # reads !function tags as their names: nothing imported
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))

    def read(
        path: Path,
    ) -> dict:  # with its include:s merged in as lm-eval does: relative to the file, its own keys win
        y = yaml.load(path.read_text(), Loader=Loader)  # a SafeLoader (above)
        inc = y.pop("include", [])
        merged = {}
        for p in inc if isinstance(inc, list) else [inc]:
            merged.update(read(path.parent / p))
        return merged | y

    out = {}
    for path in sorted(TASKS_DIR.glob("skillscale_bench_*.yaml")):  # not the templates (_*_yaml) nor the group
        y = read(path)
        spec = dict(y["dataset_kwargs"], task=y["task"], yaml=str(path))
        out[spec["benchmark"]] = spec
    return out


def metric(name: str) -> str:
    return PREFIX + name


def skill_metric(skill: str) -> str:
    return PREFIX + skill


def resolve(cfg_benchmarks: dict | None) -> dict[str, dict]:
    """Config entries completed from the shipped specs: name -> spec with skill, mirror, split, limit."""
    known = shipped()
    out = {}
    for name, entry in (cfg_benchmarks or {}).items():
        if name not in known:
            raise BenchmarkError(f"eval.benchmarks.{name}: unknown benchmark; shipped: {', '.join(known)}")
        entry = entry or {}
        spec = dict(known[name])
        spec["skill"] = entry.get("skill") or spec["skill"]
        spec["split"] = entry.get("split") or spec["split"]
        spec["name"] = entry["name"] if entry.get("name") is not None else spec["name"]
        spec["mirror"] = entry.get("mirror")
        spec["limit"] = entry.get("limit")
        out[name] = spec
    return out


def config_problems(cfg: dict, skills) -> list[str]:
    """Problems of eval.benchmarks found without reading any data (run at validation)."""
    problems = []
    known = shipped()
    for name, entry in (cfg.get("eval", {}).get("benchmarks") or {}).items():
        if name not in known:
            problems.append(f"eval.benchmarks.{name}: unknown benchmark; shipped: {', '.join(known)}")
            continue
        entry = entry or {}
        skill = entry.get("skill") or known[name]["skill"]
        if skill not in skills:
            problems.append(
                f"eval.benchmarks.{name}.skill: {skill!r} is not a skill of this study"
                f" (skills: {', '.join(sorted(skills))})"
            )
        mirror = entry.get("mirror")
        if mirror and _looks_local(mirror) and not Path(mirror).exists():
            problems.append(f"eval.benchmarks.{name}.mirror: {mirror} does not exist")
    return problems


def _looks_local(mirror: str) -> bool:
    """A filesystem path rather than a hub id ('owner/name' with no such folder here)."""
    p = Path(mirror)
    return p.is_absolute() or mirror.startswith(".") or p.suffix in FILE_FORMATS or p.exists()


# -- loading a mirror ------------------------------------------------------------------


def load_split(spec: dict) -> tuple[list[dict], str]:
    """The split's documents as plain dicts, and a description of where they came from."""
    # deferred: datasets (and pyarrow) take seconds to import: only when a source is read
    import datasets

    mirror, split = spec["mirror"], spec["split"]
    key = f"eval.benchmarks.{spec['benchmark']}.mirror"
    if mirror is None:  # the hub itself (online, or the local HF cache)
        src = f"hub {spec['hub']}" + (f" ({spec['name']})" if spec["name"] else "")
        try:
            return datasets.load_dataset(spec["hub"], spec["name"], split=split).to_list(), src
        except Exception as e:
            raise BenchmarkError(
                f"eval.benchmarks.{spec['benchmark']}: no mirror set and {src} split"
                f" {split!r} could not be loaded ({type(e).__name__}: {e}); set {key}"
                " to a local copy"
            ) from e
    p = Path(mirror)
    if p.is_file():
        if p.suffix not in FILE_FORMATS:
            raise BenchmarkError(f"{key}: {p} is not a data file datasets reads ({', '.join(FILE_FORMATS)})")
        # one file holds one split: the one the task reads
        return _read_file(p, key), f"file {p}"
    if p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
        d = datasets.load_from_disk(str(p))
        if isinstance(d, datasets.DatasetDict):
            if split not in d:
                raise BenchmarkError(f"{key}: {p} has splits {sorted(d)}, not {split!r} that the task reads")
            d = d[split]
        return d.to_list(), f"save_to_disk folder {p}"
    try:  # a local copy of the hub repository, or a name datasets resolves
        d = datasets.load_dataset(str(p) if p.exists() else mirror, spec["name"])
    except Exception as e:
        raise BenchmarkError(
            f"{key}: {mirror} could not be loaded by datasets.load_dataset ({type(e).__name__}: {e})"
        ) from e
    if split not in d:
        raise BenchmarkError(f"{key}: {mirror} has splits {sorted(d)}, not {split!r} that the task reads")
    return d[split].to_list(), f"datasets path {mirror}"


def _read_file(p: Path, key: str) -> list[dict]:
    if p.suffix == ".jsonl":  # the common case: no arrow cache, no type inference
        rows = []
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise BenchmarkError(f"{key}: {p} line {i + 1} is not JSON ({e})") from e
        return rows
    # deferred: datasets (and pyarrow) take seconds to import: only when a source is read
    import datasets

    d = datasets.load_dataset(FILE_FORMATS[p.suffix], data_files={"split": str(p)}, split="split")
    return d.to_list()


def _field(doc: dict, dotted: str):
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def check_docs(docs: list[dict], spec: dict, source: str) -> None:
    """Every doc has every field the task reads, non-empty (a gold answer list needs an answer)."""
    where = f"eval.benchmarks.{spec['benchmark']} ({source}, split {spec['split']!r})"
    if not docs:
        raise BenchmarkError(f"{where}: no documents")
    for i, doc in enumerate(docs):
        for f in spec["fields"]:
            try:
                v = _field(doc, f)
            except KeyError:
                have = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
                raise BenchmarkError(
                    f"{where}: document {i} lacks field {f!r} that the task reads (it has {have})"
                ) from None
            if v is None or (isinstance(v, list) and not v):  # e.g. an answer list with no answer
                raise BenchmarkError(f"{where}: document {i} has an empty {f!r}")


def copy_documents(cfg: dict, out_dir: Path) -> dict:
    """Load, check and write every configured benchmark's documents into the study (data/benchmarks/),
    so that every cell scores the same documents offline; all checked before any is written."""
    specs = resolve(cfg["eval"].get("benchmarks"))
    loaded = {}
    for name, spec in specs.items():
        docs, source = load_split(spec)
        check_docs(docs, spec, source)
        if spec["limit"]:
            docs = docs[: spec["limit"]]
        # keep the fields the task reads (top level): small files, one arrow schema per task
        keep = {f.split(".")[0] for f in spec["fields"]}
        loaded[name] = ([{k: d[k] for k in d if k in keep} for d in docs], source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, (docs, source) in loaded.items():
        text = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in docs)
        common.write_text(out_dir / f"{name}.jsonl", text)
        spec = specs[name]
        manifest[name] = {
            "skill": spec["skill"],
            "task": spec["task"],
            "source": source,
            "split": spec["split"],
            "n_docs": len(docs),
            "limit": spec["limit"],
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
    common.write_json(out_dir / "manifest.json", manifest)
    return manifest
