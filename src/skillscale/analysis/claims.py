"""The paper's three claims as tests the data can fail (the rules: docs/claims.md).

Each claim is judged from intervals in the tables, group by group, with one rule:

- a *group* is one independent fit with an interval (a code fraction x budget, or a budget);
- the group is *for* the claim when its interval excludes 0 on the claimed side, *against*
  when it excludes 0 on the other side;
- supported: at least `MIN_GROUPS` groups, at least half of them for, and no more against
  than chance explains (`tolerated`: floor(CHANCE x groups), CHANCE = 0.1, the share of
  groups a 90% interval misses on some side by chance alone);
- contradicted: at least `MIN_GROUPS` groups, at least half of them against, and no more for
  than chance explains (claim 3, which claims a change of either sign, is contradicted when
  at least half of its groups show a change smaller than `EQUIVALENCE` with their whole
  interval, and no more than chance a change);
- undecided: anything else (too few groups, intervals that include 0, or groups that
  disagree).

A claim with several parts is supported when every part is, contradicted when any part is,
undecided otherwise. The verdicts read only the tables' columns, so they work for any
metrics with a skill (knowledge or code), benchmark metrics included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "undecided"
MIN_GROUPS = 2
CHANCE = 0.1  # share of groups a 90% interval excludes 0 by chance alone (two sides together)
# Claim 3: a change of N* smaller than 10% (|ln ratio| < ln 1.1) is "no change" in practice;
# the paper reports changes up to ~50%.
EQUIVALENCE = float(np.log(1.1))


@dataclass
class Part:
    """One part of a claim: its groups' tally and the verdict the rule gives."""

    claim: str
    part: str
    rule: str  # the statistic and its claimed side, in words
    n_groups: int  # groups with an interval
    n_for: int
    n_against: int
    n_neither: int
    verdict: str
    median: float = np.nan  # median point estimate over the groups, for the reader

    def to_dict(self) -> dict:
        return asdict(self)


def tolerated(n: int) -> int:
    """Groups on the other side that chance alone explains among n: floor(CHANCE n)."""
    return int(np.floor(CHANCE * n + 1e-9))


def _verdict(n: int, n_for: int, n_against: int, min_groups: int = MIN_GROUPS) -> str:
    if n < min_groups:
        return UNDECIDED
    if 2 * n_for >= n and n_against <= tolerated(n):
        return SUPPORTED
    if 2 * n_against >= n and n_for <= tolerated(n):
        return CONTRADICTED
    return UNDECIDED


def sign_test(claim: str, part: str, rule: str, est, lo, hi, side: int, min_groups: int = MIN_GROUPS) -> Part:
    """The rule for a claim that a statistic is > 0 (side=+1) or < 0 (side=-1)."""
    est, lo, hi = (np.asarray(v, float) for v in (est, lo, hi))
    ok = np.isfinite(lo) & np.isfinite(hi)
    lo, hi, est = lo[ok], hi[ok], est[ok]
    above, below = lo > 0, hi < 0
    n_for, n_against = int((above if side > 0 else below).sum()), int((below if side > 0 else above).sum())
    n = int(ok.sum())
    return Part(
        claim,
        part,
        rule,
        n,
        n_for,
        n_against,
        n - n_for - n_against,
        _verdict(n, n_for, n_against, min_groups),
        float(np.median(est)) if n else np.nan,
    )


def change_test(
    claim: str, part: str, rule: str, est, lo, hi, margin: float = EQUIVALENCE, min_groups: int = MIN_GROUPS
) -> Part:
    """The rule for a claim that a statistic differs from 0, with one sign across groups.

    for: the interval excludes 0 and does not lie within +-margin; against: the whole
    interval lies within +-margin (a change, if any, too small to matter). Groups
    that change in both directions (more of the rarer sign than chance explains) make the
    claim undecided: there is no consistent change.
    """
    est, lo, hi = (np.asarray(v, float) for v in (est, lo, hi))
    ok = np.isfinite(lo) & np.isfinite(hi)
    lo, hi, est = lo[ok], hi[ok], est[ok]
    small = (lo > -margin) & (hi < margin)
    # a change the interval bounds below the margin is no change, even if it excludes 0
    pos, neg = (lo > 0) & ~small, (hi < 0) & ~small
    n = int(ok.sum())
    n_for, n_against = int((pos | neg).sum()), int(small.sum())
    verdict = _verdict(n, n_for, n_against, min_groups)
    if verdict == SUPPORTED and min(pos.sum(), neg.sum()) > tolerated(n):
        verdict = UNDECIDED
    return Part(
        claim, part, rule, n, n_for, n_against, n - n_for - n_against, verdict, float(np.median(est)) if n else np.nan
    )


def combine(parts: list[Part]) -> str:
    """Supported when every part is, contradicted when any is, else undecided."""
    vs = [p.verdict for p in parts]
    if vs and all(v == SUPPORTED for v in vs):
        return SUPPORTED
    if CONTRADICTED in vs:
        return CONTRADICTED
    return UNDECIDED


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    if "status" not in df.columns:
        return df.iloc[0:0]
    return df[df["status"].astype(str) == "ok"]


# --------------------------------------------------------------------------------------
# the claims
# --------------------------------------------------------------------------------------

CLAIM1 = "1: knowledge is capacity-hungry, code data-hungry"
CLAIM2 = "2: a skill's own data moves its N* up, knowledge faster than code"
CLAIM3 = "3: the validation set's composition changes N*"


def claim1(ape: pd.DataFrame) -> list[Part]:
    """APE residuals of the skill metrics that do not build the aggregate, per skill."""
    if "residual" not in ape.columns:
        return [Part(CLAIM1, s, "no APE table", 0, 0, 0, 0, UNDECIDED) for s in ("knowledge", "code")]
    a = _ok(ape)
    if "claim1_counts" in a.columns:  # independent of the APE, each once (apeparts.claim1_use)
        a = a[a["claim1_counts"].astype(str).str.lower().isin(["true", "1"])]
    elif "in_aggregate" in a.columns:  # a table written before claim1_counts existed
        a = a[~a["in_aggregate"].astype(str).str.lower().isin(["true", "1"])]
    out = []
    for skill, side, word in (("knowledge", 1, "> 0"), ("code", -1, "< 0")):
        g = a[a["skill"] == skill]
        metrics = ", ".join(sorted(g["metric"].unique())) or "none"
        out.append(
            sign_test(
                CLAIM1,
                skill,
                f"APE residual {word} per code fraction x budget x metric ({metrics})",
                g["residual"],
                g["residual_lo"],
                g["residual_hi"],
                side,
            )
        )
    return out


def claim2(slopes: pd.DataFrame) -> list[Part]:
    """Per-budget slopes per skill (> 0), and knowledge - code at C_ref (> 0)."""
    if "slope" not in slopes.columns:
        return [
            Part(CLAIM2, p, "no datamix table", 0, 0, 0, 0, UNDECIDED)
            for p in ("knowledge slope", "code slope", "knowledge - code")
        ]
    s = _ok(slopes)
    basis = s["basis"] if "basis" in s.columns else pd.Series("budget", index=s.index)
    per = s[basis == "budget"]
    out = []
    for skill in ("knowledge", "code"):
        g = per[per["skill"] == skill]
        out.append(
            sign_test(
                CLAIM2,
                f"{skill} slope",
                "d ln N*/d own-data share > 0 per budget x metric",
                g["slope"],
                g["slope_lo"],
                g["slope_hi"],
                1,
            )
        )
    d = s[basis == "difference at C_ref"]
    # one C_ref: every metric pair is one group; a single pair may decide
    out.append(
        sign_test(
            CLAIM2,
            "knowledge - code",
            "knowledge slope - code slope > 0 at C_ref per metric pair",
            d["slope"],
            d["slope_lo"],
            d["slope_hi"],
            1,
            min_groups=1,
        )
    )
    return out


def claim3(summary: pd.DataFrame) -> list[Part]:
    """The signed contrast ln N*(w=1) - ln N*(w=0) per code fraction x budget."""
    if "contrast" not in summary.columns:
        return [Part(CLAIM3, "contrast", "no validation-composition table", 0, 0, 0, 0, UNDECIDED)]
    g = summary[summary["status"].astype(str).str.match(r"^(ok|partial)")]
    return [
        change_test(
            CLAIM3,
            "contrast",
            "ln N*(w=1) - ln N*(w=0) excludes 0, beyond +-ln 1.1 (against: inside +-ln 1.1) per code fraction x budget",
            g["contrast"],
            g["contrast_lo"],
            g["contrast_hi"],
        )
    ]


def verdicts(tables: dict) -> pd.DataFrame:
    """One row per claim part plus one per claim (part 'all'): the claims table."""
    rows = []
    for parts in (
        claim1(tables["ape_residuals"]),
        claim2(tables["datamix_slopes"]),
        claim3(tables["validation_composition_summary"]),
    ):
        rows += [p.to_dict() for p in parts]
        rows.append(
            dict(
                claim=parts[0].claim,
                part="all",
                rule="every part supported / any part contradicted",
                n_groups=sum(p.n_groups for p in parts),
                n_for=sum(p.n_for for p in parts),
                n_against=sum(p.n_against for p in parts),
                n_neither=sum(p.n_neither for p in parts),
                verdict=combine(parts),
                median=np.nan,
            )
        )
    out = pd.DataFrame(rows)
    # like every table: a status per row ("ok": the rule was applied; its outcome is `verdict`)
    out["status"] = "ok"
    return out
