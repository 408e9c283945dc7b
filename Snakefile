"""skillscale: datamix ablation study of skill-dependent compute-optimal scaling.

    snakemake --cores all                       # the whole study in config/config.yaml
    snakemake --cores all --configfile config/studies/test.yaml
    snakemake tables --cores 1                  # tables + figures from whatever cells exist

config -> plan -> data -> train -> evaluate -> aggregate -> fit -> report
"""

import os
import sys
from dataclasses import asdict

from skillscale import common, study
from skillscale import config as study_config
from skillscale.data.prepare import rule_params as data_rule_params


configfile: "config/config.yaml"


# Validate before any job is scheduled: a typo must not cost GPU-hours.
_validated = study.validate(dict(config), "config (config/config.yaml + --configfile/--config)")
config.clear()
config.update(_validated)

STUDY = config["study"]
R = f"results/{STUDY}"
S = study.Study(config, R)  # the grid, once: cells, trunks, packs, job FLOPs
CELLS, DROPPED = S.cells, S.dropped
CELL = S.cell
CELL_PARAMS = {c.cell: asdict(c) for c in CELLS}  # once here, not once per job (5,000-cell grids)
# warmup-stable-decay: cells of one (code fraction, size, seed) branch off one shared trunk
WSD = S.wsd
RUN = S.trunk
RUN_PARAMS = {k: asdict(r) for k, r in RUN.items()}
RUN_OF = S.trunk_of
# resources.pack: small trunks of one size trained side by side, one process each, in one job
PACK, PACK_OF = S.pack, S.pack_of
# a trunk job's FLOPs: the trunk and the cooldowns of its cells (its Slurm runtime request)
TRUNK_JOB_FLOPS = {k: S.job_flops(k) for k in RUN}
# the trunk jobs' folder and record: trunks/<run>/trunk.json (stable/<run>/stable.json in a
# study trained before the rename, read where it is so that none of its jobs reruns)
TRUNKS = f"{R}/{S.trunks_dir}"
TRUNK_RECORD = study.trunk_record_name(S.trunks_dir)
for moved in study.move_renamed_tables(R):
    print(moved, file=sys.stderr)
if WSD and S.trunks_dir == study.LEGACY_TRUNKS:
    print(
        f"{TRUNKS}/: trunk jobs of a study trained before 'stable' was renamed 'trunk'; read where they are",
        file=sys.stderr,
    )

# Jobs re-read the validated config from here (command-line overrides included). The file
# is not an input of any rule: what each job depends on is passed as params, so editing one
# key re-runs only the jobs that use it.
CONFIG_FILE = f"{R}/config.yaml"
common.write_text_if_changed(CONFIG_FILE, study_config.dump(config))
# The grid's cell ids, rewritten only when they change. plan and analyze take it as input:
# a grown grid must rerun them, and with .snakemake/ metadata gone (results copied
# elsewhere, the folder deleted) Snakemake sees no other reason to, and then never looks
# at the new cells below an analyze whose outputs exist.
GRID_FILE = f"{R}/grid.txt"
common.write_text_if_changed(GRID_FILE, "".join(f"{c}\n" for c in sorted(CELL)))


wildcard_constraints:
    cell=r"code[0-9.]+_C[^/]+_seed[0-9]+",
    run=r"code[0-9.]+_d[0-9]+L[0-9]+h[0-9]+_seed[0-9]+",
    pack=r"d[0-9]+L[0-9]+h[0-9]+_pack[0-9]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"


localrules:
    all,
    plan,
    tables,
    curves,
    storage,


if WSD:

    localrules:
        collect_cell,


rule all:
    default_target: True
    input:
        f"{R}/plan.csv",
        rules.analyze.output,
        rules.curves.output,
        rules.storage.output if STORES_FACTS else [],
