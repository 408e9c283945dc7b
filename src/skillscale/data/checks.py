"""What the schema cannot check about configured sources (data.sources) and the tokenizer,
before any job runs: required keys per kind, shares that add up, local files that exist,
a pretrained tokenizer that loads, and cells that would repeat a source past max_epochs."""

from __future__ import annotations

import codecs
from pathlib import Path

from skillscale import plan
from skillscale.data.corpora import DataError
from skillscale.data.mixing import shares, taken
from skillscale.data.sources import key, resolve_files
from skillscale.data.tokenizer import BPETokenizer


def config_problems(cfg: dict) -> list[str]:
    """What the schema cannot check about data.sources (before any job runs)."""
    srcs, out = cfg["data"]["sources"], []
    if not srcs:
        return [
            "data.sources: empty; name at least a knowledge and a code source,"
            " or leave it null for the embedded corpora"
        ]
    need = {"hf": ["path"], "files": ["files"], "embedded": ["corpus"]}
    for name, s in srcs.items():
        for k in need[s["kind"]]:
            if not s.get(k):
                out.append(f"{key(name)}.{k}: required for kind: {s['kind']}")
        if s["role"] not in ("knowledge", "code") and not s.get("share"):
            out.append(
                f"{key(name)}.share: role {s['role']!r} is neither knowledge nor code, so it needs a fixed share"
            )
        if s["kind"] == "files":  # local files are checked now: a typo must not wait for a job
            for part in ("files", "heldout_files"):
                if s.get(part):
                    try:
                        resolve_files(name, s[part], part)
                    except DataError as e:
                        out.append(str(e))
        if s["kind"] != "hf" and s.get("heldout_split"):
            out.append(f"{key(name)}.heldout_split: only for kind: hf (files take heldout_files)")
        if s.get("encoding"):
            try:
                codecs.lookup(s["encoding"])
            except LookupError:
                out.append(f"{key(name)}.encoding: {s['encoding']!r} is not a Python codec (e.g. utf-8, latin-1)")
        if s.get("aggregate") is False and s["role"] not in ("knowledge", "code"):
            out.append(
                f"{key(name)}.aggregate: only knowledge and code sources are pooled into the APE"
                f" (role {s['role']!r}'s text is never pooled)"
            )
    for role in ("knowledge", "code"):
        of_role = [k for k, s in srcs.items() if s["role"] == role]
        if of_role and not [k for k in of_role if srcs[k].get("aggregate", True)]:
            out.append(
                f"data.sources: every {role} source ({', '.join(of_role)}) has aggregate: false, leaving"
                f" {role}_text (the APE's {role} part) without text; pool at least one"
            )
    fixed = sum(s["share"] for s in srcs.values() if s.get("share"))
    fracs = cfg["mix"]["code_fractions"]
    roles = {s["role"] for s in srcs.values() if not s.get("share")}
    if fixed >= 1:
        out.append(f"data.sources: fixed shares add up to {fixed:g}, leaving nothing for the code fractions")
    elif max(fracs) > 1 - fixed + 1e-9:
        out.append(
            f"mix.code_fractions: {max(fracs)} plus the fixed shares of data.sources ({fixed:g}) exceed 1;"
            f" code fractions can be at most {1 - fixed:g}"
        )
    if max(fracs) > 0 and "code" not in roles:
        out.append(
            "data.sources: mix.code_fractions asks for code but no source has role: code (without a fixed share)"
        )
    if min(fracs) < 1 - fixed - 1e-9 and "knowledge" not in roles:
        out.append(
            "data.sources: the mix leaves a knowledge share but no source has role: knowledge (without a fixed share)"
        )
    if not out and any(s.get("max_tokens") for s in srcs.values()):
        out += capped_epoch_problems(cfg)
    tc = cfg["data"]["tokenizer"]
    if tc["pretrained"] is None and tc["vocab_size"] > 65535:
        out.append("data.tokenizer.vocab_size: a trained tokenizer is at most 65535 ids")
    if tc["pretrained"]:
        out += pretrained_problems(tc)
    return out


def pretrained_path(tc: dict) -> Path:
    src = Path(tc["pretrained"]).expanduser()
    return src / "tokenizer.json" if src.is_dir() else src


def pretrained_problems(tc: dict) -> list[str]:
    """A pretrained tokenizer must load now, and the models' vocabulary must be its size."""
    path = pretrained_path(tc)
    try:
        tok = BPETokenizer.load(path)
    except Exception as e:
        return [
            f"data.tokenizer.pretrained: {path} does not load as a tokenizers JSON file"
            f" (a tokenizer.json, or a Hugging Face tokenizer folder holding one): {type(e).__name__}: {e}"
        ]
    if tok.eos_id is None:
        return [f"data.tokenizer.pretrained: {path} has none of the document separators {BPETokenizer.EOS_NAMES}"]
    if tok.vocab_size != tc["vocab_size"]:
        return [
            f"data.tokenizer.vocab_size: {tc['vocab_size']}, but data.tokenizer.pretrained {path} has"
            f" {tok.vocab_size} ids; set vocab_size: {tok.vocab_size} (the models' embedding size)"
        ]
    return []


def epoch_problems(cfg: dict, cells, n_seqs: dict[str, int], batch_size: int) -> list[str]:
    """Cells that would repeat a source more than its max_epochs (sizes as prepared)."""
    srcs, out = cfg["data"]["sources"], []
    for c in cells:
        sh = shares(srcs, c.code_frac)
        for name, k in zip(sh, taken(c.steps * batch_size, list(sh.values()))):
            s = srcs[name]
            limit = s.get("max_epochs") or (None if s["kind"] == "embedded" else cfg["data"]["max_epochs"])
            if limit and n_seqs[name] and k / n_seqs[name] > limit + 1e-9:
                out.append(
                    f"cell {c.cell}: would take {k / n_seqs[name]:.2f} epochs of source {name!r}"
                    f" ({k:,} of its {n_seqs[name]:,} sequences) > max_epochs={limit:g};"
                    f" add data to {key(name)} (or raise its max_tokens/max_documents), lower the budget,"
                    " or raise data.max_epochs"
                )
    return out


def capped_epoch_problems(cfg: dict) -> list[str]:
    """At planning, where a source's size is known: one capped by max_tokens holds at most
    about max_tokens / (seq_len + 1) sequences, so a cell needing more than max_epochs of
    that is refused before any job (the rest are checked once preparation has counted)."""
    try:
        cells, _ = plan.build(cfg)
    except Exception:  # a broken grid is reported by the grid checks
        return []
    width = cfg["model"]["seq_len"] + 1
    most = {k: s["max_tokens"] // width for k, s in cfg["data"]["sources"].items() if s.get("max_tokens")}
    n_seqs = {k: most.get(k, 0) for k in cfg["data"]["sources"]}
    return [
        p.replace("would take", "would take at least") + " (its max_tokens cap, at planning)"
        for p in epoch_problems(cfg, cells, n_seqs, cfg["train"]["batch_size"])
    ]
