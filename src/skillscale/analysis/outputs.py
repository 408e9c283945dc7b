"""Names and paths of everything `skillscale analyze` writes, without the analysis imports.

The Snakefile declares these as the analyze rule's outputs at every parse; `report` (numpy,
pandas, scipy: seconds to import) re-exports them.
"""

from __future__ import annotations

from pathlib import Path

TABLES = {
    "optima": "Compute-optimal size per code fraction x skill metric x budget (IsoFLOP parabola)",
    "scaling": "Power law N*(C) = exp(b) C^a per code fraction x skill metric",
    "ape_residuals": "APE residuals ln N*(skill) - ln N*(validation mix) per code fraction x metric x budget",
    "datamix_slopes": "Datamix slopes d ln N* / d (fraction of the skill's own data)",
    "validation_composition": "N* picked by a validation mix with knowledge share w",
    "validation_composition_summary": "Largest relative change of N* over the validation mix weight w",
    "heldout_prediction": "Held-out budget: fit on all budgets but the largest, predict the largest",
    "parametric": "Approach 3: L(N, D) = E + A/N^alpha + B/D^beta per code fraction x skill metric",
    "claims": "Verdict per claim and part: groups whose interval is for / against the claim (docs/claims.md)",
    "certainty": (
        "How sure the answers are: N* interval ratio, exponent interval width, claim-2 differences excluding 0"
    ),
    "mixture_law": "Mixture law L(N, D, s) per skill metric x form: parameters, fit quality, held-out score",
    "mixture_loo": "Leave one code fraction out: each form's N* and loss* at the held-out fraction vs the observed",
    "mixture_slopes": "Claim 2 from the mixture law: d ln N*/d own share beside the per-budget slopes",
    "mixture_accounting": "The mixture law's N* with C = 6ND and with exact FLOPs (attention included)",
}
TABLE_FORMATS = ("csv", "md", "tex")
FIGURES = {
    "isoflop": "isoflop.png",
    "scaling": "scaling.png",
    "optimum_vs_mix": "optimum_vs_code_fraction.png",
    "validation_composition": "validation_composition.png",
    "ape_residuals": "ape_residuals.png",
    "mixture_law": "mixture_law.png",
}


# drawn by the curves rule (analysis/curves.py), apart from analyze: the tables stay as they are
CURVE_FIGURES = {"training_curves": "training_curves.png", "train_vs_heldout": "train_vs_heldout.png"}


def output_paths(study_dir: str | Path) -> dict:
    """Every file analyze writes, by name (the workflow declares exactly these)."""
    r = Path(study_dir)
    out = {"cells": r / "cells.csv", "summary": r / "tables" / "summary.md"}
    # the fitted mixture laws, which `skillscale optimum` answers from
    out["mixture_cache"] = r / "tables" / "mixture_law.json"
    for name in TABLES:
        for ext in TABLE_FORMATS:
            out[f"{name}_{ext}"] = r / "tables" / f"{name}.{ext}"
    for name, fn in FIGURES.items():
        out[f"fig_{name}"] = r / "figures" / fn
    return out


def curve_paths(study_dir: str | Path) -> dict:
    """The figures the curves rule draws, by name."""
    return {name: Path(study_dir) / "figures" / fn for name, fn in CURVE_FIGURES.items()}


# written by the storage rule (analysis/storage.py), only for a study whose facts are mentioned by population
STORAGE_TABLES = ("storage", "storage_fit")


def storage_paths(study_dir: str | Path) -> dict:
    """The tables and figure the storage rule writes, by name."""
    r = Path(study_dir)
    out = {f"{n}_{ext}": r / "tables" / f"{n}.{ext}" for n in STORAGE_TABLES for ext in ("csv", "md")}
    out["fig_storage"] = r / "figures" / "storage.png"
    return out
