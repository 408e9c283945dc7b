# Each trained cell scored per skill through lm-evaluation-harness (bits per byte), with
# the standard benchmarks of eval.benchmarks in the same run.


rule evaluate_cell:
    input:
        model=f"{R}/cells/{{cell}}/model.safetensors",
        record=f"{R}/cells/{{cell}}/train.json",
        manifest=f"{DATA}/manifest.json",
        evals=EVAL_FILES,
        benchmarks=BENCH_MANIFEST,
    output:
        f"{R}/cells/{{cell}}/eval.json",
    params:
        data=lambda w, input: os.path.dirname(input.manifest),
        cell_dir=lambda w, input: os.path.dirname(input.record),
        batch_size=config["eval"]["batch_size"],
        # only in studies with benchmarks, so adding the option re-evaluates no other study
        **({"benchmarks": ",".join(BENCHMARKS)} if BENCHMARKS else {}),
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
        " --batch-size {params.batch_size} --threads {threads}"
        + (" --benchmarks {params.benchmarks}" if BENCHMARKS else "")
        + " > {log} 2>&1"
