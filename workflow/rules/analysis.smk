# Aggregate -> fits -> tables -> figures. Cheap, and re-runnable alone: `snakemake tables`.
# The file list comes from skillscale.analysis.report, so the rule declares exactly what analyze
# writes; figures (and the tables, for download) are declared with report() so that
# `snakemake --report report.html` collects them.

from skillscale.analysis.outputs import FIGURES as _FIGURES
from skillscale.analysis.outputs import TABLES as _TABLES
from skillscale.analysis.outputs import output_paths as _analysis_paths
from skillscale.analysis.outputs import curve_paths as _curve_paths
from skillscale.analysis.outputs import storage_paths as _storage_paths


report: "../report/workflow.rst"


_ANALYSIS = {k: str(v) for k, v in _analysis_paths(R).items()}
# figure name -> (caption, report category)
_FIGURE_REPORT = {
    "isoflop": ("isoflop.rst", "1. IsoFLOP fits"),
    "scaling": ("scaling.rst", "1. IsoFLOP fits"),
    "ape_residuals": ("ape_residuals.rst", "2. Skills vs aggregate (claim 1)"),
    "optimum_vs_mix": ("optimum_vs_code_fraction.rst", "3. Datamix (claim 2)"),
    "validation_composition": ("validation_composition.rst", "4. Validation composition (claim 3)"),
    "mixture_law": ("mixture_law.rst", "3. Datamix (claim 2)"),
}
ANALYSIS_OUT = {k: v for k, v in _ANALYSIS.items() if not k.startswith("fig_") and not k.endswith("_csv")}
ANALYSIS_OUT["summary"] = report(_ANALYSIS["summary"], caption="../report/summary.rst", category="0. Summary")
TABLES_OUT = {
    f"{name}_csv": report(_ANALYSIS[f"{name}_csv"], caption="../report/tables.rst", category="5. Tables")
    for name in _TABLES
}
FIGURES_OUT = {
    f"fig_{name}": report(_ANALYSIS[f"fig_{name}"], caption=f"../report/{cap}", category=cat)
    for name, (cap, cat) in _FIGURE_REPORT.items()
}
assert set(_FIGURE_REPORT) == set(_FIGURES), "every figure analyze draws needs a caption here"


rule analyze:
    input:
        GRID_FILE,
        all_cell_evals(),
    output:
        **ANALYSIS_OUT,
        **TABLES_OUT,
        **FIGURES_OUT,
    log:
        f"{R}/logs/analyze.log",
    conda:
        "../../envs/skillscale.yaml"
    params:
        config=CONFIG_FILE,
        study=lambda w, output: os.path.dirname(output.cells),
        fit=config["fit"],
    shell:
        "skillscale analyze --config {params.config} --study-dir {params.study} > {log} 2>&1"


# Training curves (analysis/curves.py): every trunk's and cell's loss curve, once all are
# trained; and each cell's final training loss against its held-out bits per byte. Its own rule,
# so the analysis and its tables do not change; it reads optima.csv (edge optima) and cells.csv.
_CURVES = {k: str(v) for k, v in _curve_paths(R).items()}


rule curves:
    input:
        trunks=[trunk_done(r) for r in RUN],
        records=[f"{cell_dir(c)}/train.json" for c in CELL],
        optima=_ANALYSIS["optima_csv"],
        cells=_ANALYSIS["cells"],
    output:
        training_curves=report(
            _CURVES["training_curves"], caption="../report/training_curves.rst", category="6. Training"
        ),
        train_vs_heldout=report(
            _CURVES["train_vs_heldout"], caption="../report/train_vs_heldout.rst", category="6. Training"
        ),
    log:
        f"{R}/logs/curves.log",
    conda:
        "../../envs/skillscale.yaml"
    params:
        config=CONFIG_FILE,
        study=lambda w, output: os.path.dirname(os.path.dirname(output.training_curves)),
    shell:
        "python -m skillscale.analysis.curves --config {params.config} --study-dir {params.study} > {log} 2>&1"


# Storage of facts (analysis/storage.py): only for a study whose facts are mentioned by
# population (data.knowledge.frequency), whose cells score the bits they store beyond the
# answers' frequency prior. Its own rule, so the analysis and its tables stay as they are.
STORES_FACTS = config["data"]["sources"] is None and config["data"]["knowledge"].get("frequency") == "population"
_STORAGE = {k: str(v) for k, v in _storage_paths(R).items()}


rule storage:
    input:
        all_cell_evals(),
        manifest=f"{DATA}/manifest.json",
    output:
        **{k: v for k, v in _STORAGE.items() if not k.startswith("fig_")},
        fig_storage=report(
            _STORAGE["fig_storage"], caption="../report/storage.rst", category="2. Skills vs aggregate (claim 1)"
        ),
    log:
        f"{R}/logs/storage.log",
    conda:
        "../../envs/skillscale.yaml"
    params:
        config=CONFIG_FILE,
        study=lambda w, output: os.path.dirname(os.path.dirname(output.storage_csv)),
    shell:
        "python -m skillscale.analysis.storage --config {params.config} --study-dir {params.study} > {log} 2>&1"


# No inputs or outputs on purpose: runs whenever asked, from the cells that exist,
# and trains nothing. No log directive on purpose either (snakemake --lint notes it):
# the user asked for this table and wants it on the terminal.
rule tables:
    conda:
        "../../envs/skillscale.yaml"
    params:
        config=CONFIG_FILE,
        study=R,
    shell:
        "skillscale analyze --config {params.config} --study-dir {params.study} --allow-missing"
