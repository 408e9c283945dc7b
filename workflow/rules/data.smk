# Corpora -> split -> tokenizer -> token shards + held-out eval sets, once per study.

DATA = f"{R}/data"
SOURCES = config["data"]["sources"]
if SOURCES is None:  # the embedded corpora: two shards and four eval sets
    EVAL_FILES = expand(f"{DATA}/eval/{{name}}.jsonl", name=["knowledge_qa", "code_fn", "knowledge_text", "code_text"])
    SHARDS = expand(f"{DATA}/shards/{{source}}.{{ext}}", source=["knowledge", "code"], ext=["bin", "json"])
else:
    # configured sources: each one's shard index (its shard files are not outputs: Snakemake
    # would delete them when a preparation fails, and a rerun resumes from them) and its
    # held-out text; the pooled validation text of the knowledge and code roles. How many
    # shard files there are is known only once prepared, so a dry run needs no download.
    _roles = {s["role"] for s in SOURCES.values()}
    EVAL_FILES = [f"{DATA}/eval/text_{k}.jsonl" for k in SOURCES] + [
        f"{DATA}/eval/{r}_text.jsonl" for r in ("knowledge", "code") if r in _roles
    ]
    SHARDS = [f"{DATA}/shards/{k}/index.json" for k in SOURCES]

# (the embedded preparation is single-threaded: its command stays what it was)
PREPARE_CMD = "python -m skillscale.data --config {params.config} --out {params.out}" + (
    " > {log} 2>&1" if SOURCES is None else " --threads {threads} > {log} 2>&1"
)


rule plan:
    input:
        GRID_FILE,
    output:
        f"{R}/plan.csv",
    log:
        f"{R}/logs/plan.log",
    conda:
        "../../envs/skillscale.yaml"
    params:
        config=CONFIG_FILE,
        grid=study_config.digest([asdict(c) for c in CELLS]),
    shell:
        "skillscale plan --config {params.config} --out {output} > {log} 2>&1"


rule prepare_data:
    output:
        manifest=f"{DATA}/manifest.json",
        tokenizer=f"{DATA}/tokenizer.json",
        shards=SHARDS,
        evals=EVAL_FILES,
    log:
        f"{R}/logs/prepare_data.log",
    conda:
        "../../envs/skillscale.yaml"
    threads: config["resources"]["prepare_threads"]
    resources:
        mem_mb=config["resources"]["prepare_mem_mb"],
        runtime=30 if SOURCES is None else 24 * 60,
    params:
        config=CONFIG_FILE,
        out=lambda w, output: os.path.dirname(output.manifest),
        # the embedded study's data keys as before data.sources existed (new keys at their
        # defaults left out), so that adding them reruns no existing study
        data=data_rule_params(config["data"]),
    shell:
        PREPARE_CMD


# Standard benchmarks (eval.benchmarks): each mirror's split checked and copied into the
# study once, so every cell scores the same documents offline. Mirror files are inputs
# (editing one re-prepares); folders and hub ids are read as they are.
BENCHMARKS = sorted(config["eval"]["benchmarks"])
BENCH_MANIFEST = [f"{DATA}/benchmarks/manifest.json"] if BENCHMARKS else []
BENCH_MIRROR_FILES = sorted(
    {
        str(e["mirror"])
        for e in config["eval"]["benchmarks"].values()
        if e and e.get("mirror") and os.path.isfile(str(e["mirror"]))
    }
)


rule prepare_benchmarks:
    input:
        BENCH_MIRROR_FILES,
    output:
        manifest=f"{DATA}/benchmarks/manifest.json",
        docs=expand(f"{DATA}/benchmarks/{{name}}.jsonl", name=BENCHMARKS),
    log:
        f"{R}/logs/prepare_benchmarks.log",
    conda:
        "../../envs/skillscale.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=CONFIG_FILE,
        out=lambda w, output: os.path.dirname(output.manifest),
        benchmarks=config["eval"]["benchmarks"],
    shell:
        "python -m skillscale.benchmarks --config {params.config} --out {params.out} > {log} 2>&1"
