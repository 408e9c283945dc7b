# Training. train.schedule=cosine: one job per cell, a fresh model decayed to its own budget.
# train.schedule=wsd: one constant-LR trunk per (code fraction, size, seed) saves a branch
# state per budget; each cell's job is then only its cooldown from that branch.
# Jobs checkpoint as they go; a killed job started again resumes (resume.pt beside outputs).


# what changes a trained model: editing log_every or checkpoint_seconds retrains nothing
TRAIN_PARAMS = {k: v for k, v in config["train"].items() if k not in study_config.NOT_TRAJECTORY}


rule train_stable:
    input:
        manifest=f"{DATA}/manifest.json",
        shards=SHARDS,
    output:
        record=f"{R}/stable/{{run}}/stable.json",
    params:
        config=CONFIG_FILE,
        data=lambda w, input: os.path.dirname(input.manifest),
        out=lambda w, output: os.path.dirname(output.record),
        run=lambda w: RUN_PARAMS[w.run],
        train=TRAIN_PARAMS,
        model=config["model"],
    conda:
        "../../envs/skillscale.yaml"
    log:
        f"{R}/logs/stable/{{run}}.log",
    threads: config["resources"]["train_threads"]
    resources:
        mem_mb=2000,
        runtime=lambda w: runtime_min(RUN[w.run].flops),
    shell:
        "python -m skillscale.train --config {params.config} --run {wildcards.run}"
        " --data {params.data} --out {params.out} --threads {threads} > {log} 2>&1"


def train_cell_inputs(w):
    inputs = {"manifest": f"{DATA}/manifest.json", "shards": SHARDS}
    if WSD:
        inputs["stable"] = f"{R}/stable/{RUN_OF[w.cell]}/stable.json"
    return inputs


rule train_cell:
    input:
        unpack(train_cell_inputs),
    output:
        model=f"{R}/cells/{{cell}}/model.safetensors",
        record=f"{R}/cells/{{cell}}/train.json",
    params:
        config=CONFIG_FILE,
        data=lambda w, input: os.path.dirname(input.manifest),
        out=lambda w, output: os.path.dirname(output.record),
        stable=lambda w, input: f"--stable {os.path.dirname(input.stable)}" if WSD else "",
        # a cell reruns when its own settings change, not when the grid grows
        cell=lambda w: CELL_PARAMS[w.cell],
        train=TRAIN_PARAMS,
        model=config["model"],
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
        " --data {params.data} --out {params.out} {params.stable} --threads {threads} > {log} 2>&1"
