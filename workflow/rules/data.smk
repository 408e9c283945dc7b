# Corpora -> split -> tokenizer -> token shards + held-out eval sets, once per study.

DATA = f"{R}/data"
EVAL_FILES = expand(f"{DATA}/eval/{{name}}.jsonl", name=["knowledge_qa", "code_fn", "knowledge_text", "code_text"])
SHARDS = expand(f"{DATA}/shards/{{source}}.{{ext}}", source=["knowledge", "code"], ext=["bin", "json"])


rule plan:
    output:
        f"{R}/plan.csv",
    params:
        grid=study_config.digest([asdict(c) for c in CELLS]),
    log:
        f"{R}/logs/plan.log",
    shell:
        "skillscale plan --config {R}/config.yaml --out {output} > {log} 2>&1"


rule prepare_data:
    output:
        manifest=f"{DATA}/manifest.json",
        tokenizer=f"{DATA}/tokenizer.json",
        shards=SHARDS,
        evals=EVAL_FILES,
    params:
        data=config["data"],
    log:
        f"{R}/logs/prepare_data.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m skillscale.data --config {R}/config.yaml --out {DATA} > {log} 2>&1"
