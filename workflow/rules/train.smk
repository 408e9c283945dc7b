# One job per cell: a fresh model trained on its own budget with its own LR schedule.


rule train_cell:
    input:
        manifest=f"{DATA}/manifest.json",
        shards=SHARDS,
    output:
        model=f"{R}/cells/{{cell}}/model.safetensors",
        record=f"{R}/cells/{{cell}}/train.json",
    params:
        config=CONFIG_FILE,
        data=lambda w, input: os.path.dirname(input.manifest),
        out=lambda w, output: os.path.dirname(output.record),
        # a cell reruns when its own settings change, not when the grid grows
        cell=lambda w: asdict(CELL[w.cell]),
        train=config["train"],
        model=config["model"],
    conda:
        "../../envs/skillscale.yaml"
    log:
        f"{R}/logs/train/{{cell}}.log",
    threads: config["resources"]["train_threads"]
    resources:
        mem_mb=2000,
        runtime=train_runtime_min,
    shell:
        "python -m skillscale.train --config {params.config} --cell {wildcards.cell}"
        " --data {params.data} --out {params.out} --threads {threads} > {log} 2>&1"
