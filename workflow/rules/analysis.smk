# Aggregate -> fits -> tables -> figures. Cheap, and re-runnable alone: `snakemake tables`.

ANALYSIS_OUT = {
    "cells": f"{R}/cells.csv",
    "optima": f"{R}/tables/optima.csv",
    "optima_md": f"{R}/tables/optima.md",
    "scaling": f"{R}/tables/scaling.csv",
}
FIGURES = {
    "isoflop": f"{R}/figures/isoflop.png",
    "optimum_vs_mix": f"{R}/figures/optimum_vs_code_fraction.png",
}


rule analyze:
    input:
        all_cell_evals(),
    output:
        **ANALYSIS_OUT,
        isoflop=report(FIGURES["isoflop"], caption="../report/isoflop.rst", category="IsoFLOP"),
        optimum_vs_mix=report(FIGURES["optimum_vs_mix"], caption="../report/optimum_vs_code_fraction.rst", category="Datamix"),
    params:
        config=CONFIG_FILE,
        study=lambda w, output: os.path.dirname(output.cells),
        fit=config["fit"],
    conda:
        "../../envs/skillscale.yaml"
    log:
        f"{R}/logs/analyze.log",
    shell:
        "skillscale analyze --config {params.config} --study-dir {params.study} > {log} 2>&1"


rule tables:
    # No inputs or outputs on purpose: runs whenever asked, from the cells that exist,
    # and trains nothing. No log directive on purpose either (snakemake --lint notes it):
    # the user asked for this table and wants it on the terminal.
    params:
        config=CONFIG_FILE,
        study=R,
    conda:
        "../../envs/skillscale.yaml"
    shell:
        "skillscale analyze --config {params.config} --study-dir {params.study} --allow-missing"
