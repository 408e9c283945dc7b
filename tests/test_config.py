import pytest

from skillscale import config, study


def test_defaults_fill_every_section():
    cfg = study.validate({})
    assert cfg["study"] == "default"
    assert cfg["train"]["lr"] > 0 and cfg["grid"]["sizes_per_budget"] == 6 and cfg["seeds"] == [0, 1]
    assert study.validate(study.validate({})) == cfg  # idempotent


def test_key_order_does_not_matter():
    # rules hand config sections to Snakemake as params, compared as text: the same settings
    # in another order (a YAML file re-saved by a tool) must not look like a changed study
    a = study.validate({"train": {"lr": 0.01, "batch_size": 4}, "data": {"knowledge": {"n_facts": 900}}})
    b = study.validate({"data": {"knowledge": {"n_facts": 900}}, "train": {"batch_size": 4, "lr": 0.01}})
    assert a == b and str(a) == str(b) and str(a["train"]) == str(b["train"])


def test_yaml_exponent_strings_are_numbers():
    # YAML 1.1 reads `1e12` as a string; a user writing it must not get a type error
    cfg = study.validate({"grid": {"budgets": ["1e11", "3e11", "1e12"]}})
    assert cfg["grid"]["budgets"] == [1e11, 3e11, 1e12]


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(config.ConfigError) as e:
        study.validate({"train": {"learning_rate": 1e-3}})
    msg = str(e.value)
    assert "train.learning_rate: unknown key" in msg and "allowed keys here" in msg and "lr" in msg


def test_missing_file_and_bad_yaml_name_the_file(tmp_path):
    with pytest.raises(config.ConfigError, match="nope.yaml"):
        study.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    with pytest.raises(config.ConfigError, match="bad.yaml: not valid YAML"):
        study.load(bad)


def test_overrides_merge_deeply(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("study: s\ntrain: {lr: 0.01}\n")
    cfg = study.load(p, {"train": {"batch_size": 4}})
    assert cfg["train"]["lr"] == 0.01 and cfg["train"]["batch_size"] == 4


def test_study_file_layers_over_the_default_config_like_snakemake(repo, tmp_path):
    """`skillscale plan --config config/config.yaml config/studies/X.yaml` must plan what
    `snakemake --configfile config/studies/X.yaml` runs: the study file over the default."""
    cfg = study.load_layers([repo / "config/config.yaml", repo / "config/studies/cpu-long.yaml"])
    default = study.load(repo / "config/config.yaml")
    assert cfg["study"] == "cpu-long" and cfg["mix"]["code_fractions"] == [0.2, 0.8]
    assert cfg["train"] == default["train"]  # not the schema's defaults: the study file names no train keys
    assert cfg["train"]["schedule"] == "wsd" == study.load(repo / "config/studies/cpu-long.yaml")["train"]["schedule"]
    with pytest.raises(config.ConfigError, match="missing.yaml: config file not found"):
        study.load_layers([repo / "config/config.yaml", tmp_path / "missing.yaml"])


LADDER_ODD_HEADS = [{"d_model": 30, "n_layers": 1, "n_heads": 4}] * 3


# Each kind of mistake a user makes, and the key its message must name. A bad config stops
# before any job runs (the Snakefile validates at parse time; test_workflow checks the exit).
@pytest.mark.parametrize(
    "bad, key, expected",
    [
        ({"trian": {}}, "trian", "allowed keys"),  # misspelt section
        ({"train": {"learning_rate": 1e-3}}, "train.learning_rate", "unknown key"),  # misspelt key
        ({"study": "../escape"}, "study", "does not match"),  # path traversal out of results/
        ({"study": "a/b"}, "study", "does not match"),
        ({"train": {"lr": -1}}, "train.lr", "Peak AdamW"),  # out of range
        ({"train": {"batch_size": "sixteen"}}, "train.batch_size", "not of type 'integer'"),  # wrong type
        ({"train": {"precision": "fp16"}}, "train.precision", "fp32"),  # not one of the choices
        ({"train": {"schedule": "linear"}}, "train.schedule", "wsd"),
        ({"train": {"beta2": 1.0}}, "train.beta2", "1.0"),
        ({"mix": {"code_fractions": [1.5]}}, "mix.code_fractions.0", "1.5"),
        ({"mix": {"code_fractions": []}}, "mix.code_fractions", "should be non-empty"),
        ({"mix": {"code_fractions": [0.5, 0.5]}}, "mix.code_fractions", "duplicates"),
        ({"seeds": [0, 0]}, "seeds", "duplicates"),
        ({"grid": {"budgets": [1e12, 1e11]}}, "grid.budgets", "strictly increasing"),
        ({"grid": {"budgets": [-1e12]}}, "grid.budgets.0", "-1"),
        ({"grid": {"budgets": [2e9]}}, "grid.budgets", "keeps 0 sizes"),  # too small to train 3 sizes
        ({"grid": {"budgets": [1e16]}}, "grid.budgets", "grid.ladder spans"),  # optimum beyond the ladder
        ({"grid": {"sizes_per_budget": 2}}, "grid.sizes_per_budget", "minimum of 3"),
        ({"grid": {"sizes_per_budget": 11}}, "grid.sizes_per_budget", "more than the 10 shapes"),
        ({"grid": {"ladder": LADDER_ODD_HEADS}}, "grid.ladder.0", "heads of even width"),
        ({"grid": {"ladder": [{"d_model": 32, "n_layers": 2}] * 3}}, "grid.ladder.0", "n_heads"),
        ({"data": {"tokenizer": {"vocab_size": 100}}}, "data.tokenizer.vocab_size", "minimum of 260"),
        ({"data": {"eval": {"knowledge_qa_items": 5000}}}, "data.eval.knowledge_qa_items", "held-out questions"),
        ({"model": {"seq_len": 4}}, "model.seq_len", "minimum of 8"),
        ({"fit": {"ci": 1.5}}, "fit.ci", "1.5"),
    ],
)
def test_bad_config_names_the_key(bad, key, expected):
    with pytest.raises(config.ConfigError) as e:
        study.validate(bad, "study.yaml")
    msg = str(e.value)
    assert msg.startswith("study.yaml: invalid config")
    assert f"\n  {key}:" in msg, msg  # the key leads its line
    assert expected in msg, msg


def test_schema_defaults_are_the_default_study(repo):
    """config/config.yaml only documents: a study file planned on its own (schema defaults
    under it) and the same file layered over config.yaml (what snakemake does) agree."""
    assert study.load(repo / "config/config.yaml") == study.validate({})
    for path in sorted((repo / "config/studies").glob("*.yaml")):
        if path.name == "test-sources.yaml":  # its local corpora exist only inside tests/test_sources.py
            continue
        alone = study.load(path)
        layered = study.load_layers([repo / "config/config.yaml", path])
        assert alone == layered, path.name
