# Each trained cell scored per skill through lm-evaluation-harness (bits per byte).


rule evaluate_cell:
    input:
        model=f"{R}/cells/{{cell}}/model.safetensors",
        record=f"{R}/cells/{{cell}}/train.json",
        manifest=f"{DATA}/manifest.json",
        evals=EVAL_FILES,
    output:
        f"{R}/cells/{{cell}}/eval.json",
    params:
        data=lambda w, input: os.path.dirname(input.manifest),
        cell_dir=lambda w, input: os.path.dirname(input.record),
        batch_size=config["eval"]["batch_size"],
    conda:
        "../../envs/skillscale.yaml"
    log:
        f"{R}/logs/evaluate/{{cell}}.log",
    threads: config["resources"]["train_threads"]
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "python -m skillscale.evaluate --cell-dir {params.cell_dir} --data {params.data}"
        " --batch-size {params.batch_size} --threads {threads} > {log} 2>&1"
