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


def ddp_processes(n_params):
    """Data-parallel processes of a training job: resources.ddp_processes for models of at
    least resources.ddp_min_params parameters, else 1."""
    rc = config["resources"]
    return rc["ddp_processes"] if n_params >= rc["ddp_min_params"] else 1


def launcher(n_params):
    """python, or torchrun with one process per GPU (rank-local threads: train_threads each)."""
    p = ddp_processes(n_params)
    return "python" if p == 1 else f"torchrun --standalone --nproc_per_node {p}"


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
            launcher=lambda w: launcher(RUN[w.run].n_params),
            threads=config["resources"]["train_threads"],  # per process
            train=TRAIN_PARAMS,
            model=config["model"],
            eval=EVAL_PARAMS,
        conda:
            "../../envs/skillscale.yaml"
        log:
            f"{R}/logs/trunk/{{run}}.log",
        threads: lambda w: config["resources"]["train_threads"] * ddp_processes(RUN[w.run].n_params)
        resources:
            mem_mb=2000,
            runtime=lambda w: runtime_min(TRUNK_JOB_FLOPS[w.run] / ddp_processes(RUN[w.run].n_params)),
            gpu=lambda w: ddp_processes(RUN[w.run].n_params),
        shell:
            "{params.launcher} -m skillscale.train --config {params.config} --trunk {wildcards.run}"
            " --data {params.data} --out {params.out} --threads {params.threads} > {log} 2>&1"

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
            launcher=lambda w: launcher(CELL[w.cell].n_params),
            threads=config["resources"]["train_threads"],  # per process
            train=TRAIN_PARAMS,
            model=config["model"],
            eval=EVAL_PARAMS,
        conda:
            "../../envs/skillscale.yaml"
        log:
            f"{R}/logs/train/{{cell}}.log",
        threads: lambda w: config["resources"]["train_threads"] * ddp_processes(CELL[w.cell].n_params)
        resources:
            mem_mb=2000,
            runtime=lambda w: runtime_min(CELL[w.cell].flops / ddp_processes(CELL[w.cell].n_params)),
            gpu=lambda w: ddp_processes(CELL[w.cell].n_params),
        shell:
            "{params.launcher} -m skillscale.train --config {params.config} --cell {wildcards.cell}"
            " --data {params.data} --out {params.out} --evaluate --threads {params.threads} > {log} 2>&1"
