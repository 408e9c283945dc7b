"""Atomic file writes and provenance records.

Every output is written to a temporary name in the same folder and renamed into place, so
a killed job leaves either the old file, the new file, or a stray ``.tmp`` — never a
half-written file that a later rule would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from skillscale import __version__


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=False, default=_jsonable) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> dict:
    """Rows as JSON lines, atomically; returns the file's name, row count and sha256."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    write_text(path, text)
    return {"file": path.name, "n_items": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path, what: str = "file"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {what} is not valid JSON ({e}); delete it and rerun") from None


def code_version() -> str:
    """Git commit of the checkout when run from one, else the package version.

    `<commit>-dirty` when a tracked file of the package (this folder, staged or not) differs
    from the commit; edits elsewhere in the checkout (README, results/) do not count."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0:
            # "." is this folder: git -C resolves pathspecs against it, not the checkout's root
            dirty = subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"skillscale {__version__}"


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("torch", "lm_eval", "numpy", "pandas", "scipy", "tokenizers", "snakemake"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name.replace("_", "-"))
    return out


def provenance(**extra) -> dict:
    return {"code_version": code_version(), "packages": package_versions(), **extra}


def write_text_if_changed(path: str | Path, text: str) -> None:
    """Atomic write that leaves the file (and its mtime) alone when nothing changed."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return
    write_text(path, text)
