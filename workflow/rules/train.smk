# Training and evaluation. Each job trains, then scores what it trained in the same process
# (a second process per cell would pay the start-up of torch and lm-eval again).
# train.schedule=wsd: one job per constant-LR trunk (code fraction, size, seed). It trains
#   the trunk, saving a branch state per budget, then each cell's cooldown from its branch
#   and the cell's evaluation, into stable/<run>/cells/<cell>/; collect_cell copies every
#   cell's files to cells/<cell>/. A trunk job rerun (a budget added, eval settings changed)
#   continues from its saved states and keeps the cells whose results still hold.
# train.schedule=cosine: one job per cell, a fresh model decayed to its own budget, then scored.
# Jobs checkpoint as they go; a killed job started again resumes (resume.pt beside outputs).


# what changes a trained model: editing log_every or checkpoint_seconds retrains nothing
TRAIN_PARAMS = {k: v for k, v in config["train"].items() if k not in study_config.NOT_TRAJECTORY}
# what changes a score (the batch size does not)
EVAL_PARAMS = {k: v for k, v in config["eval"].items() if k != "batch_size"}
CELL_FILES = ("model.safetensors", "train.json", "eval.json")


if WSD:

    rule train_trunk:
        input:
            manifest=f"{DATA}/manifest.json",
            shards=SHARDS,
            evals=EVAL_FILES,
            benchmarks=BENCH_MANIFEST,
        output:
            record=f"{R}/stable/{{run}}/stable.json",
        params:
            config=CONFIG_FILE,
            data=lambda w, input: os.path.dirname(input.manifest),
            out=lambda w, output: os.path.dirname(output.record),
            run=lambda w: RUN_PARAMS[w.run],
            train=TRAIN_PARAMS,
            model=config["model"],
            eval=EVAL_PARAMS,
        conda:
            "../../envs/skillscale.yaml"
        log:
            f"{R}/logs/trunk/{{run}}.log",
        threads: config["resources"]["train_threads"]
        resources:
            mem_mb=2000,
            runtime=lambda w: runtime_min(TRUNK_JOB_FLOPS[w.run]),
        shell:
            "python -m skillscale.train --config {params.config} --run {wildcards.run}"
            " --data {params.data} --out {params.out} --threads {threads} > {log} 2>&1"

    rule collect_cell:
        # A copy, in the scheduler's own process (no job start-up): cells/<cell>/ is what
        # the analysis and the user read; the trunk's folder is that job's working state.
        input:
            stable=lambda w: f"{R}/stable/{RUN_OF[w.cell]}/stable.json",
        output:
            model=f"{R}/cells/{{cell}}/model.safetensors",
            record=f"{R}/cells/{{cell}}/train.json",
            eval=f"{R}/cells/{{cell}}/eval.json",
        run:
            study_io.copy_files(os.path.join(os.path.dirname(input.stable), "cells", wildcards.cell),
                                os.path.dirname(output.record), CELL_FILES)

else:

    rule train_cell:
        input:
            manifest=f"{DATA}/manifest.json",
            shards=SHARDS,
            evals=EVAL_FILES,
            benchmarks=BENCH_MANIFEST,
        output:
            model=f"{R}/cells/{{cell}}/model.safetensors",
            record=f"{R}/cells/{{cell}}/train.json",
            eval=f"{R}/cells/{{cell}}/eval.json",
        params:
            config=CONFIG_FILE,
            data=lambda w, input: os.path.dirname(input.manifest),
            out=lambda w, output: os.path.dirname(output.record),
            # a cell reruns when its own settings change, not when the grid grows
            cell=lambda w: CELL_PARAMS[w.cell],
            train=TRAIN_PARAMS,
            model=config["model"],
            eval=EVAL_PARAMS,
        conda:
            "../../envs/skillscale.yaml"
        log:
            f"{R}/logs/train/{{cell}}.log",
        threads: config["resources"]["train_threads"]
        resources:
            mem_mb=2000,
            runtime=lambda w: runtime_min(CELL[w.cell].flops),
        shell:
            "python -m skillscale.train --config {params.config} --cell {wildcards.cell}"
            " --data {params.data} --out {params.out} --evaluate --threads {threads} > {log} 2>&1"
