"""Bad input in a configured source, and the stated rule for it (`on_bad: error | skip`).

A *bad item* is a file or row that cannot become a document: a file that does not decode in
the source's `encoding` or holds a NUL byte, an empty file, a line that is not JSON or not a
JSON object, a row whose text field is missing, null or not a string, a row (or
one-document file) over `max_row_bytes`, a parquet file whose text column is not a string or
that does not read. Under `error` (the default) the first one stops the preparation with one
message naming the source, the file and where in it, and the key that changes the rule;
under `skip` each is counted per reason, the first few kept as examples for the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from skillscale.data.corpora import DataError

POLICIES = ("error", "skip")
N_EXAMPLES = 5  # examples kept per source for the manifest (the counts are complete)

# reason -> what it means, in the words of docs/data-sources.md ("Bad input")
REASONS = {
    "nul_byte": "a NUL byte (a binary file?)",
    "undecodable": "bytes that do not decode in the source's encoding",
    "empty_file": "an empty file",
    "unparsable": "a line that is not JSON",
    "not_an_object": "a JSON line that is not an object",
    "text_missing": "a row without the text field",
    "text_null": "a row whose text field is null",
    "text_not_string": "a row whose text field is not a string",
    "template": "a row the template does not format",
    "too_long": "a row or one-document file over max_row_bytes",
    "column_type": "a parquet file whose text column is not a string",
    "unreadable": "a file that does not read as its format",
}


@dataclass(slots=True)
class Bad:
    """One bad file or row: why, where (file and position), and what was found."""

    reason: str
    file: str
    where: str  # "line 3 (byte 120)", "byte 128", "row index 7", or "" for the whole file
    detail: str  # what was found; "{key}" stands for the source's key (data.sources.<name>)

    def message(self, name: str, note: str = "") -> str:
        at = f"{self.file}, {self.where}" if self.where else self.file
        return (
            f"data.sources.{name}: {at}: {self.detail.replace('{key}', f'data.sources.{name}')}{note};"
            f" set data.sources.{name}.on_bad: skip (or data.on_bad: skip for every source)"
            " to skip such rows and files and count them in the manifest"
        )

    def example(self, name: str) -> dict:
        return asdict(self) | {"detail": self.detail.replace("{key}", f"data.sources.{name}")}


def policy(spec: dict) -> str:
    """The source's rule: its own on_bad, else the data-wide one the preparation filled in, else error."""
    return spec.get("on_bad") or "error"


def empty_report() -> dict:
    return {"skipped": 0, "counts": {}, "examples": []}


def record(report: dict, bad: Bad, name: str) -> None:
    """Count one skipped item into a source's report (kept in the resumable progress record)."""
    report["skipped"] += 1
    report["counts"][bad.reason] = report["counts"].get(bad.reason, 0) + 1
    if len(report["examples"]) < N_EXAMPLES:
        report["examples"].append(bad.example(name))


def refuse_recorded(name: str, spec: dict, report: dict) -> None:
    """A resumed preparation under `error` whose earlier run skipped items: stop as `error` would have."""
    if policy(spec) == "error" and report.get("skipped"):
        note = f" (an earlier run of this preparation skipped it and {report['skipped'] - 1} more under on_bad: skip)"
        raise DataError(Bad(**report["examples"][0]).message(name, note))


def summary(report: dict) -> str:
    """'3 bad items skipped (unparsable 1, text_null 2)' for the log."""
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(report["counts"].items()))
    return f"{report['skipped']:,} bad items skipped ({counts})"
