import pytest

from skillscale import config


def test_defaults_fill_every_section():
    cfg = config.validate({})
    assert cfg["study"] == "default"
    assert cfg["train"]["lr"] > 0 and cfg["grid"]["sizes_per_budget"] == 5
    assert config.validate(config.validate({})) == cfg  # idempotent


def test_yaml_exponent_strings_are_numbers():
    # YAML 1.1 reads `1e12` as a string; a user writing it must not get a type error
    cfg = config.validate({"grid": {"budgets": ["1e11", "3e11", "1e12"]}})
    assert cfg["grid"]["budgets"] == [1e11, 3e11, 1e12]


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(config.ConfigError) as e:
        config.validate({"train": {"learning_rate": 1e-3}})
    msg = str(e.value)
    assert "train" in msg and "learning_rate" in msg and "allowed keys" in msg and "lr" in msg


def test_missing_file_and_bad_yaml_name_the_file(tmp_path):
    with pytest.raises(config.ConfigError, match="nope.yaml"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    with pytest.raises(config.ConfigError, match="bad.yaml: not valid YAML"):
        config.load(bad)


def test_overrides_merge_deeply(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("study: s\ntrain: {lr: 0.01}\n")
    cfg = config.load(p, {"train": {"batch_size": 4}})
    assert cfg["train"]["lr"] == 0.01 and cfg["train"]["batch_size"] == 4
