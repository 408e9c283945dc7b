# Training and evaluation. Each job trains, then scores what it trained in the same process
# (a second process per cell would pay the start-up of torch and lm-eval again).
# train.schedule=wsd: one job per constant-LR trunk (code fraction, size, seed). It trains
#   the trunk, saving a branch state per budget, then each cell's cooldown from its branch
#   and the cell's evaluation, into trunks/<run>/cells/<cell>/; collect_cell copies every
#   cell's files to cells/<cell>/. A trunk job rerun (a budget added, eval settings changed)
#   continues from its saved states and keeps the cells whose results still hold.
#   With resources.pack, small trunks of one size train side by side in one train_pack job
#   (one process each, one GPU for all), which writes packs/<pack>.json when all are done.
#   Trunks of at least resources.ddp_min_params train data-parallel (torchrun).
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
            **training_inputs(),
        output:
            record=f"{TRUNKS}/{{run}}/{TRUNK_RECORD}",
        log:
            f"{R}/logs/trunk/{{run}}.log",
        conda:
            "../../envs/skillscale.yaml"
        threads: lambda w: config["resources"]["train_threads"] * ddp_processes(RUN[w.run].n_params)
        resources:
            **gpu_request(lambda w: RUN[w.run].n_params),
            mem_mb=2000,
            runtime=lambda w: runtime_min(TRUNK_JOB_FLOPS[w.run] / plan.ddp_world(config, RUN[w.run].n_params)),
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
        shell:
            "{params.launcher} -m skillscale.train --config {params.config} --trunk {wildcards.run}"
            " --data {params.data} --out {params.out} --threads {params.threads} > {log} 2>&1"

    rule train_pack:
        # resources.pack: small trunks of one size side by side on one GPU, one `--trunk`
        # process each (so each result is the one it gets alone), in one job: one queue
        # wait and one job start-up instead of k. Each writes trunks/<run>/ as train_trunk
        # does; the pack's record is written once all are done.
        input:
            **training_inputs(),
        output:
            record=f"{R}/packs/{{pack}}.json",
        log:
            f"{R}/logs/pack/{{pack}}.log",
        conda:
            "../../envs/skillscale.yaml"
        threads: lambda w: config["resources"]["train_threads"] * len(PACK[w.pack].runs)
        resources:
            mem_mb=lambda w: 2000 * len(PACK[w.pack].runs),
            # side by side: the job lasts about as long as its longest member
            runtime=lambda w: runtime_min(max(TRUNK_JOB_FLOPS[r] for r in PACK[w.pack].runs)),
            gpu=1,
            gpu_model=os.environ.get("SKILLSCALE_GPU_MODEL") or None,
        params:
            config=CONFIG_FILE,
            data=lambda w, input: os.path.dirname(input.manifest),
            out=TRUNKS,
            runs=lambda w: " ".join(PACK[w.pack].runs),
            members=lambda w: [RUN_PARAMS[r] for r in PACK[w.pack].runs],
            threads=config["resources"]["train_threads"],  # per member process
            train=TRAIN_PARAMS,
            model=config["model"],
            eval=EVAL_PARAMS,
        shell:
            "python -m skillscale.train --config {params.config} --pack {params.runs} --record {output.record}"
            " --data {params.data} --out {params.out} --threads {params.threads} > {log} 2>&1"

    rule collect_cell:
        # A copy (a hard link where the filesystem allows: a large checkpoint is not copied
        # byte by byte), each file atomically and with a fresh time, by the scheduler (a
        # local rule): cells/<cell>/ is what the analysis and the user read; the trunk's
        # folder is that job's working state. A shell command, not a run: block, because
        # Snakemake spawns a whole new snakemake process for every run: job (~5 s each,
        # one per cell), while a shell command is just the command.
        input:
            done=lambda w: trunk_done(RUN_OF[w.cell]),
        output:
            model=f"{R}/cells/{{cell}}/model.safetensors",
            record=f"{R}/cells/{{cell}}/train.json",
            eval=f"{R}/cells/{{cell}}/eval.json",
        params:
            src=lambda w: f"{TRUNKS}/{RUN_OF[w.cell]}/cells/{w.cell}",
            dest=lambda w, output: os.path.dirname(output.record),
            files=" ".join(CELL_FILES),
        shell:
            "for f in {params.files}; do"
            ' test -f {params.src}/$f || {{ echo "{params.src}/$f missing: the trunk job that makes it did not'
            ' finish (rerun it: snakemake reruns a job whose output is missing)" >&2; exit 1; }};'
            " ln -f {params.src}/$f {params.dest}/.$f.tmp 2>/dev/null || cp {params.src}/$f {params.dest}/.$f.tmp;"
            " touch {params.dest}/.$f.tmp && mv -f {params.dest}/.$f.tmp {params.dest}/$f;"
            " done"

else:

    rule train_cell:
        input:
            **training_inputs(),
        output:
            model=f"{R}/cells/{{cell}}/model.safetensors",
            record=f"{R}/cells/{{cell}}/train.json",
            eval=f"{R}/cells/{{cell}}/eval.json",
        log:
            f"{R}/logs/train/{{cell}}.log",
        conda:
            "../../envs/skillscale.yaml"
        threads: lambda w: config["resources"]["train_threads"] * ddp_processes(CELL[w.cell].n_params)
        resources:
            **gpu_request(lambda w: CELL[w.cell].n_params),
            mem_mb=2000,
            runtime=lambda w: runtime_min(CELL[w.cell].flops / plan.ddp_world(config, CELL[w.cell].n_params)),
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
        shell:
            "{params.launcher} -m skillscale.train --config {params.config} --cell {wildcards.cell}"
            " --data {params.data} --out {params.out} --evaluate --threads {params.threads} > {log} 2>&1"
