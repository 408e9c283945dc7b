"""Standard benchmarks as skill metrics: fixtures in each dataset's own schema, scored
through the real lm-evaluation-harness, prompts checked against lm-eval's own tasks."""

import json
from pathlib import Path

import datasets
import pytest

from skillscale import benchmarks, study
from skillscale import config as cfgmod
from skillscale.data.tokenizer import ByteTokenizer
from skillscale.evaluate.harness import METRICS, SkillscaleLM, benchmark_metrics, run_tasks
from test_evaluate import Uniform, write_eval_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "benchmarks"
NAMES = sorted(benchmarks.shipped())


def all_fixtures() -> dict:
    return {"eval": {"benchmarks": {n: {"mirror": str(FIXTURES / f"{n}.jsonl")} for n in NAMES}}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    manifest = benchmarks.copy_documents(all_fixtures(), d / "benchmarks")
    return d, manifest


def test_the_required_benchmarks_ship_with_their_skills():
    skills = {n: s["skill"] for n, s in benchmarks.shipped().items()}
    for n in ("triviaqa", "nq_open", "webqs", "arc_easy", "arc_challenge", "sciq"):
        assert skills[n] == "knowledge"
    assert skills["humaneval"] == skills["mbpp"] == "code"
    assert set(benchmarks.SKILLS) == {s for _, s in METRICS.values()}
    for n in NAMES:
        assert (FIXTURES / f"{n}.jsonl").exists(), f"no fixture for {n}"


def test_uniform_byte_model_scores_eight_bits_per_byte_on_every_benchmark(prepared):
    d, manifest = prepared
    lm = SkillscaleLM(Uniform(), ByteTokenizer(), seq_len=16, batch_size=4)
    r = run_tasks(lm, write_eval_dir(d / "eval"), benchmarks=NAMES, benchmarks_dir=d / "benchmarks")
    for name in NAMES:
        got = r["benchmarks"][name]
        assert got["bits_per_byte"] == pytest.approx(8.0, abs=1e-6), name  # float32 log-softmax, float64 sums
        assert manifest[name]["n_docs"] == len((FIXTURES / f"{name}.jsonl").read_text().splitlines())
        # multiple choice: every choice ties, so the first one is picked
        if "acc" in got:
            assert 0 <= got["acc"] <= 1 and 0 <= got["acc_norm"] <= 1
    bpb, skills = benchmark_metrics(r["benchmarks"], manifest)
    assert bpb["bench:knowledge"] == pytest.approx(8.0, abs=1e-6) and skills["bench:code"] == "code"


def test_gold_bytes_are_the_bytes_of_the_scored_continuation(prepared):
    d, _ = prepared
    lm = SkillscaleLM(Uniform(), ByteTokenizer(), seq_len=16, batch_size=4)
    r = run_tasks(
        lm, write_eval_dir(d / "eval"), benchmarks=["triviaqa", "mbpp", "sciq"], benchmarks_dir=d / "benchmarks"
    )["benchmarks"]
    docs = lambda n: [json.loads(x) for x in (FIXTURES / f"{n}.jsonl").read_text().splitlines()]
    assert r["triviaqa"]["gold_bytes"] == sum(len((" " + x["answer"]["value"]).encode()) for x in docs("triviaqa"))
    # mbpp's reference code without its Windows line ends
    assert r["mbpp"]["gold_bytes"] == sum(len(x["code"].replace("\r\n", "\n").encode()) for x in docs("mbpp"))
    assert r["sciq"]["gold_bytes"] == sum(len((" " + x["correct_answer"]).encode()) for x in docs("sciq"))


def test_skill_pools_its_benchmarks_by_bytes():
    details = {
        "a": {"bits_per_byte": 2.0, "gold_bytes": 100},
        "b": {"bits_per_byte": 5.0, "gold_bytes": 300},
        "c": {"bits_per_byte": 1.0, "gold_bytes": 10},
    }
    manifest = {"a": {"skill": "knowledge"}, "b": {"skill": "knowledge"}, "c": {"skill": "code"}}
    bpb, skills = benchmark_metrics(details, manifest)
    assert bpb["bench:knowledge"] == pytest.approx((2 * 100 + 5 * 300) / 400)  # not the mean 3.5
    assert bpb["bench:code"] == 1.0 and bpb["bench:a"] == 2.0 and skills["bench:b"] == "knowledge"


# -- the prompt is the harness's ---------------------------------------------------------


def harness_config(name: str) -> dict:
    """lm-eval's own YAML for task `name` (functions left unimported: humaneval's and mbpp's
    utils load an `evaluate` metric at import)."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    root = Path(lm_eval.__file__).parent / "tasks"
    for folder in dict.fromkeys([name, name.split("_")[0]]):
        for path in sorted((root / folder).glob("*.yaml")) if (root / folder).is_dir() else []:
            cfg = load_yaml(path, resolve_func=False)
            if cfg.get("task") == name:
                return cfg
    raise AssertionError(f"lm-eval {lm_eval.__version__} has no task {name!r}: update skillscale's task")


def harness_task(name: str, docs: list[dict]):
    """lm-eval's task built from its own config, on the fixture docs instead of the hub."""
    from lm_eval.api.task import ConfigurableTask

    cfg = harness_config(name)
    split = cfg.get("test_split") or cfg.get("validation_split")
    keep = {
        k: cfg[k] for k in ("task", "doc_to_text", "description", "target_delimiter", "fewshot_delimiter") if k in cfg
    }
    # only what builds the prompt: its metrics and filters are for generation
    keep.update(
        output_type="loglikelihood",
        doc_to_target="",
        test_split=split,
        custom_dataset=lambda **_: datasets.DatasetDict({split: datasets.Dataset.from_list(docs)}),
    )
    return ConfigurableTask(config=keep)


@pytest.mark.parametrize("name", NAMES)
def test_prompt_is_the_harness_doc_to_text(prepared, name):
    from lm_eval.tasks import TaskManager

    d, _ = prepared
    tm = TaskManager(
        include_path=str(benchmarks.TASKS_DIR),
        include_defaults=False,
        metadata={"benchmarks_dir": str(d / "benchmarks")},
    )
    task = benchmarks.shipped()[name]["task"]
    ours = tm.load([task])["tasks"][task]
    docs = list(ours.test_docs())
    theirs = harness_task(benchmarks.shipped()[name]["harness"], docs)
    for doc in docs:
        assert ours.doc_to_text(doc) == theirs.doc_to_text(doc)
        assert ours.fewshot_context(doc, 0) == theirs.fewshot_context(doc, 0)  # description included
    if name in ("triviaqa", "nq_open", "webqs"):  # the answer follows the prompt as the harness puts it
        delim = theirs.config.target_delimiter
        for doc in docs:
            assert ours.doc_to_target(doc).startswith(delim) and not ours.doc_to_target(doc)[len(delim) :].startswith(
                " "
            )


# -- mirrors -----------------------------------------------------------------------------


def test_every_mirror_form_prepares_the_same_docs(tmp_path):
    rows = [json.loads(x) for x in (FIXTURES / "arc_easy.jsonl").read_text().splitlines()]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "test.parquet"))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "saved"))
    out = {}
    for form, mirror in [
        ("jsonl", FIXTURES / "arc_easy.jsonl"),
        ("parquet", tmp_path / "test.parquet"),
        ("saved", tmp_path / "saved"),
    ]:
        benchmarks.copy_documents({"eval": {"benchmarks": {"arc_easy": {"mirror": str(mirror)}}}}, tmp_path / form)
        out[form] = (tmp_path / form / "arc_easy.jsonl").read_text()
    assert out["jsonl"] == out["parquet"] == out["saved"]
    benchmarks.copy_documents(
        {"eval": {"benchmarks": {"arc_easy": {"mirror": str(FIXTURES / "arc_easy.jsonl"), "limit": 2}}}},
        tmp_path / "lim",
    )
    assert len((tmp_path / "lim" / "arc_easy.jsonl").read_text().splitlines()) == 2


def test_unknown_benchmark_or_foreign_skill_is_a_config_error():
    with pytest.raises(
        cfgmod.ConfigError, match=r"eval\.benchmarks\.trivia_qa: unknown benchmark; shipped: .*triviaqa"
    ):
        study.validate({"eval": {"benchmarks": {"trivia_qa": None}}})
    with pytest.raises(cfgmod.ConfigError, match=r"eval\.benchmarks\.mbpp\.skill: 'math' is not a skill"):
        study.validate({"eval": {"benchmarks": {"mbpp": {"skill": "math"}}}})
    with pytest.raises(
        cfgmod.ConfigError, match=r"eval\.benchmarks\.sciq\.mirror: /no/such/sciq\.jsonl does not exist"
    ):
        study.validate({"eval": {"benchmarks": {"sciq": {"mirror": "/no/such/sciq.jsonl"}}}})
    with pytest.raises(
        cfgmod.ConfigError, match=r"eval\.benchmarks\.sciq\.mirorr: unknown key; allowed keys here: limit, mirror"
    ):
        study.validate({"eval": {"benchmarks": {"sciq": {"mirorr": "x"}}}})


def test_mirror_lacking_a_field_or_split_fails_before_anything_is_written(tmp_path):
    bad = tmp_path / "trivia.jsonl"
    rows = [json.loads(x) for x in (FIXTURES / "triviaqa.jsonl").read_text().splitlines()]
    del rows[2]["answer"]["value"]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "eval": {
            "benchmarks": {"arc_easy": {"mirror": str(FIXTURES / "arc_easy.jsonl")}, "triviaqa": {"mirror": str(bad)}}
        }
    }
    with pytest.raises(
        benchmarks.BenchmarkError,
        match=r"eval\.benchmarks\.triviaqa \(file .*trivia\.jsonl, split"
        r" 'validation'\): document 2 lacks field 'answer\.value'",
    ):
        benchmarks.copy_documents(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # arc_easy was fine, but nothing is written
    ds = datasets.Dataset.from_list([json.loads(x) for x in (FIXTURES / "sciq.jsonl").read_text().splitlines()])
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "sciq"))
    with pytest.raises(
        benchmarks.BenchmarkError,
        match=r"eval\.benchmarks\.sciq\.mirror: .*sciq has splits \['train'\],"
        r" not 'test'",
    ):
        benchmarks.copy_documents(
            {"eval": {"benchmarks": {"sciq": {"mirror": str(tmp_path / "sciq")}}}}, tmp_path / "out"
        )


def test_task_definitions_import_nothing_that_downloads():
    """Our benchmark utils import only json, pathlib and datasets (lm-eval's code tasks load
    `evaluate`'s code_eval when their YAML is read)."""
    src = (benchmarks.TASKS_DIR / "utils.py").read_text()
    imports = {line.split()[1] for line in src.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"json", "pathlib", "datasets"}, imports
    for y in benchmarks.TASKS_DIR.glob("*yaml"):  # the templates (_*_yaml) too
        assert "evaluate" not in y.read_text().replace("skillscale", "")


def test_the_group_lists_every_shipped_benchmark():
    """_skillscale_benchmarks.yaml, the lm-eval group, names exactly the shipped benchmark tasks."""
    import yaml

    group = yaml.safe_load((benchmarks.TASKS_DIR / "_skillscale_benchmarks.yaml").read_text())
    assert sorted(group["task"]) == sorted(spec["task"] for spec in benchmarks.shipped().values())
