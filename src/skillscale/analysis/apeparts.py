"""Which metrics are parts of the APE, and so which ones claim 1 may count.

The APE is w·knowledge_text + (1 − w)·code_text. A metric built from the same held-out text
is no evidence about the skills against it: its optimum and the APE's share their data,
and the two text parts' residuals oppose each other by construction. On configured sources
(data.sources) knowledge_text and code_text pool the held-out text of every knowledge and
code source, so each such source's `text_<source>` is a part too (where a role has a single
source, its text_<source> is the pooled set under another name); a source with
`aggregate: false` is scored but not pooled, and stays independent. Whatever the config
says, a metric whose value equals an APE part's in every cell is that part again, and of
several metrics identical in every cell only one is counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COUNTED = "counted: independent of the APE"
SKILLS = ("knowledge", "code")  # the skills claim 1 is about


def components(sources: dict | None, knowledge_metric: str, code_metric: str) -> dict[str, str]:
    """metric -> why it is a part of the APE (from the config)."""
    out = {
        knowledge_metric: f"an APE part ({knowledge_metric}: its knowledge text)",
        code_metric: f"an APE part ({code_metric}: its code text)",
    }
    for name, s in (sources or {}).items():
        if s["role"] in ("knowledge", "code") and s.get("aggregate", True):
            pooled = knowledge_metric if s["role"] == "knowledge" else code_metric
            out.setdefault(f"text_{name}", f"pooled into {pooled} (an APE part); aggregate: false would keep it out")
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal in every cell where either has a value (and both have values in the same cells)."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    return bool(fa.any() and (fa == fb).all() and np.array_equal(a[fa], b[fb]))


def claim1_use(
    wide: pd.DataFrame, metrics: list[str], parts: dict[str, str], skills: dict[str, str]
) -> dict[str, tuple[bool, bool, str]]:
    """metric -> (in_aggregate, counted by claim 1, why), over the cells table's wide form.

    in_aggregate: an APE part by the config, or equal to one in every cell. Counted: a
    knowledge or code metric not in the aggregate and not equal in every cell to an earlier
    (sorted) counted metric."""
    vals = {m: wide[m].to_numpy(float) for m in metrics if m in wide.columns}
    out, counted = {}, []
    for m in sorted(metrics):
        if skills.get(m) not in SKILLS and m not in parts:
            out[m] = (False, False, f"not counted: its skill ({skills.get(m)}) is neither knowledge nor code")
            continue
        if m in parts:
            out[m] = (True, False, f"not counted: {parts[m]}")
            continue
        twin = next((p for p in sorted(parts) if p in vals and m in vals and _same(vals[m], vals[p])), None)
        if twin is not None:
            out[m] = (True, False, f"not counted: identical to {twin} in every cell ({parts[twin]})")
            continue
        twin = next((c for c in counted if m in vals and _same(vals[m], vals[c])), None)
        if twin is not None:
            out[m] = (False, False, f"not counted: identical to {twin} in every cell (counted once, as {twin})")
            continue
        counted.append(m)
        out[m] = (False, True, COUNTED)
    return out
