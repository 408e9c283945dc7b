# Corpora -> split -> tokenizer -> token shards + held-out eval sets, once per study.

DATA = f"{R}/data"
EVAL_FILES = expand(f"{DATA}/eval/{{name}}.jsonl", name=["knowledge_qa", "code_fn", "knowledge_text", "code_text"])
SHARDS = expand(f"{DATA}/shards/{{source}}.{{ext}}", source=["knowledge", "code"], ext=["bin", "json"])


rule plan:
    output:
        f"{R}/plan.csv",
    params:
        config=CONFIG_FILE,
        grid=study_config.digest([asdict(c) for c in CELLS]),
    conda:
        "../../envs/skillscale.yaml"
    log:
        f"{R}/logs/plan.log",
    shell:
        "skillscale plan --config {params.config} --out {output} > {log} 2>&1"


rule prepare_data:
    output:
        manifest=f"{DATA}/manifest.json",
        tokenizer=f"{DATA}/tokenizer.json",
        shards=SHARDS,
        evals=EVAL_FILES,
    params:
        config=CONFIG_FILE,
        out=lambda w, output: os.path.dirname(output.manifest),
        data=config["data"],
    conda:
        "../../envs/skillscale.yaml"
    log:
        f"{R}/logs/prepare_data.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m skillscale.data --config {params.config} --out {params.out} > {log} 2>&1"
