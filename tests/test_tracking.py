"""Live tracking (logging.wandb, logging.tensorboard): a real trunk job with both on, W&B in
its offline mode, whose run files are read back with the packages' own formats; off by
default; a tracker whose package is missing is refused at validation."""

import json
import os
import struct
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
from wandb.proto import wandb_internal_pb2

from conftest import REPO
from skillscale import benchmarks, plan, study
from skillscale import config as cfgmod
from skillscale.config import ConfigError
from skillscale.data.prepare import prepare
from test_benchmarks import FIXTURES

BENCH = ["arc_easy", "triviaqa"]


def wandb_records(path):
    """The records of an offline W&B run file (run-<id>.wandb): W&B's 7-byte header, then a
    LevelDB log (32 KiB blocks of chunks: crc32, length, type), each record a protobuf."""
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or kind == 0:  # a block's zero padding
            pos += left
            continue
        buf, pos = buf + data[pos + 7 : pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # a whole record, or the last chunk of one
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            yield rec
            buf = b""


def wandb_runs(wandb_dir):
    """name -> {group, job_type, config, history: [row]} of every offline run under wandb_dir."""
    runs = {}
    for f in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb")):
        run = {"history": [], "config": {}}
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run |= {"name": rec.run.display_name, "group": rec.run.run_group, "job_type": rec.run.job_type}
                run["config"] = {u.key: json.loads(u.value_json) for u in rec.run.config.update}
            elif kind == "history":
                # a key with "/" is stored split (nested_key: ["train", "loss"])
                items = rec.history.item
                run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
        runs[run["name"]] = run
    return runs


def tensorboard_scalars(run_dir) -> dict:
    """tag -> [(step, value)] of a run folder's event files."""
    ea = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    ea.Reload()
    return {
        tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in ea.Tensors(tag)]
        for tag in ea.Tags()["tensors"]
    }


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One WSD trunk job of the test study (trunk, two cooldowns, their evaluations with two
    benchmarks) run by the workflow's own command with W&B (offline) and TensorBoard on. It
    is also the offline-node recipe (docs/cluster.md): data and benchmarks prepared here,
    then the job with HF_HUB_OFFLINE=1, an empty HF cache and every HTTP(S) request sent to
    a closed port, so that it fails if anything on the training path reaches for the network."""
    d = tmp_path_factory.mktemp("tracking")
    wandb = {"mode": "offline", "project": "skillscale-tests"}
    over = {
        "train": {"checkpoint_seconds": 0, "log_every": 5},
        "eval": {"benchmarks": {b: {"mirror": str(FIXTURES / f"{b}.jsonl")} for b in BENCH}},
        "logging": {"wandb": wandb, "tensorboard": {"dir": str(d / "tb")}},
    }
    cfg = study.load(REPO / "config" / "studies" / "test.yaml", over)
    (d / "config.yaml").write_text(cfgmod.dump(cfg))
    prepare(cfg, d / "data")
    benchmarks.copy_documents(cfg, d / "data" / "benchmarks")
    trunk = min((t for t in plan.trunks(cfg, plan.build(cfg)[0]) if len(t.branches) > 1), key=lambda t: t.flops)
    out = d / "results" / "trunks" / trunk.run
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, a request fails at once
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_DIR": str(d / "wb"), "WANDB_SILENT": "true"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(d / "hf-empty"), "NO_PROXY": ""}
    env |= dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), closed)
    cmd = ["--config", d / "config.yaml", "--trunk", trunk.run, "--data", d / "data", "--out", out, "--threads", "1"]
    cmd = [sys.executable, "-m", "skillscale.train", *map(str, cmd)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    curves = {trunk.run: json.loads((out / "trunk.json").read_text())["curve"]}
    scores = {}
    for cid, _ in trunk.branches:
        curves[cid] = json.loads((out / "cells" / cid / "train.json").read_text())["curve"]
        scores[cid] = json.loads((out / "cells" / cid / "eval.json").read_text())["bits_per_byte"]
    return {"dir": d, "trunk": trunk, "curves": curves, "scores": scores}


def test_wandb_offline_runs_hold_each_jobs_curve_and_scores(tracked):
    runs = wandb_runs(tracked["dir"] / "wb")
    trunk = tracked["trunk"]
    assert set(runs) == set(tracked["curves"]), "one run per trunk and per cell"
    for name, curve in tracked["curves"].items():
        run = runs[name]
        assert run["group"] == "test" and run["job_type"] == ("trunk" if name == trunk.run else "cell")
        assert run["config"]["study"] == "test" and run["config"]["config"]["train"]["schedule"] == "wsd"
        what = run["config"][run["job_type"]]
        assert what.get("run", what.get("cell")) == name  # the trunk's or the cell's own plan entry
        rows = [r for r in run["history"] if "train/loss" in r]
        # the logged history is train.json's curve, value for value
        assert [(r["_step"], r["train/loss"], r["train/lr"], r["train/tokens"]) for r in rows] == [
            (p["step"], p["loss"], p["lr"], p["tokens"]) for p in curve
        ]
        # tokens/s is logged by the job that trained the point: a cooldown's inherited trunk
        # points (up to its branch) carry none
        branch = dict(trunk.branches).get(name, 0)
        assert [r["_step"] for r in rows if "train/tokens_per_second" in r] == [
            p["step"] for p in curve if p["step"] > branch
        ]
        assert all(r["train/tokens_per_second"] > 0 for r in rows if "train/tokens_per_second" in r)
    for cid, bpb in tracked["scores"].items():
        logged = {k.split("/", 2)[2]: v for r in runs[cid]["history"] for k, v in r.items() if k.startswith("eval/")}
        assert logged == bpb and logged


def test_tensorboard_event_files_hold_each_jobs_curve_and_scores(tracked):
    for name, curve in tracked["curves"].items():
        tags = tensorboard_scalars(tracked["dir"] / "tb" / name)
        assert tags["train/loss"] == [(p["step"], p["loss"]) for p in curve]  # double precision: exact
        assert tags["train/lr"] == [(p["step"], p["lr"]) for p in curve]
        assert tags["train/tokens"] == [(p["step"], p["tokens"]) for p in curve]
    for cid, bpb in tracked["scores"].items():
        tags = tensorboard_scalars(tracked["dir"] / "tb" / cid)
        assert {t.split("/", 2)[2]: v[0][1] for t, v in tags.items() if t.startswith("eval/")} == bpb


def test_a_trunk_job_trains_and_scores_offline_from_data_prepared_before(tracked):
    # the fixture's job ran with the hub switched off and no network: it trained every cell
    # and scored them on the study's metrics and both benchmarks from data/ alone
    for bpb in tracked["scores"].values():
        assert {f"bench:{b}" for b in BENCH} <= set(bpb)
        assert all(v == v and v > 0 for v in bpb.values())  # numbers, not NaN


def test_tracking_leaves_the_records_as_they_are(tracked):
    # a record's curve points keep their five fields whether or not a tracker watched
    for curve in tracked["curves"].values():
        assert all(set(p) == {"step", "tokens", "loss", "lr", "seconds"} for p in curve)


def test_logging_is_off_by_default_and_imports_neither_package():
    code = (
        "import sys; from skillscale import study; from skillscale.train import tracking;"
        f"cfg = study.load({str(REPO / 'config' / 'config.yaml')!r});"
        "assert cfg['logging'] == {'tensorboard': None, 'wandb': None}, cfg['logging'];"
        "assert tracking.open_run(cfg, 'x', 'cell', {}, '.') is tracking.OFF;"
        "assert not {'wandb', 'tensorboard'} & set(sys.modules), 'a tracker package was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tracking_settings_change_no_tables_provenance():
    # tables print the study config's hash; logging makes no number, so it is left out of it
    # (the hash a config had before the key existed: 74fdac7f39a2 for the test study at a5597a0)
    off = study.load(REPO / "config" / "studies" / "test.yaml")
    on = study.load(REPO / "config" / "studies" / "test.yaml", {"logging": {"tensorboard": {}}})
    assert cfgmod.study_digest(on) == cfgmod.study_digest(off)
    assert cfgmod.study_digest(off) == cfgmod.digest({k: v for k, v in off.items() if k != "logging"})


@pytest.mark.parametrize("key", ["wandb", "tensorboard"])
def test_a_tracker_whose_package_is_missing_is_refused_naming_key_and_install(key, monkeypatch):
    monkeypatch.setitem(sys.modules, key, None)  # Python's own way to make a package unimportable
    with pytest.raises(ConfigError) as e:
        study.load(REPO / "config" / "studies" / "test.yaml", {"logging": {key: {}}})
    assert f"logging.{key}: is set, but the {key} package is not installed" in str(e.value)
    assert f"pip install 'skillscale[{key}]'" in str(e.value)
