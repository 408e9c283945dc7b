"""Bad data is caught with a message that says what and where, before anything trains on it."""

import json

import pytest

from skillscale import common, study
from skillscale.data import corpora
from skillscale.data.embedded import check_no_leakage
from skillscale.data.prepare import prepare
from skillscale.evaluate.harness import load_cell


def evals(**over):
    base = {
        "knowledge_text": [{"id": "wiki:Paris", "text": "x"}],
        "code_text": [{"id": "py:json/decoder.py", "text": "x"}],
        "code_fn": [{"id": "py:json/decoder.py:scanstring:0"}],
        "knowledge_qa": [{"id": "Lyon:q0"}],
    }
    return base | over


def test_heldout_document_in_training_is_refused():
    facts = [corpora.Fact("Lyon", "France", qa_in_training=False)]
    check_no_leakage([corpora.Doc("wiki:Rome", "...")], evals(), facts)  # clean: passes
    with pytest.raises(
        corpora.DataError, match="knowledge_text: 1 held-out documents are also in training, e.g. wiki:Paris"
    ):
        check_no_leakage([corpora.Doc("wiki:Paris#r3", "...")], evals(), facts)
    with pytest.raises(
        corpora.DataError, match="code_fn: function py:json/decoder.py:scanstring:0 comes from a training file"
    ):
        check_no_leakage([corpora.Doc("py:json/decoder.py", "...")], evals(code_text=[]), facts)
    with pytest.raises(corpora.DataError, match="knowledge_qa: Lyon:q0 was asked in training"):
        check_no_leakage([], evals(), [corpora.Fact("Lyon", "France", qa_in_training=True)])


def test_a_corpus_too_small_to_hold_anything_out_is_refused(tmp_path):
    cfg = study.validate(
        {
            "data": {
                "knowledge": {"wiki_max_docs": 2, "n_facts": 10},
                "eval": {"knowledge_qa_items": 5},
                "heldout_fraction": 0.01,
            }
        }
    )
    with pytest.raises(corpora.DataError, match=r"data.heldout_fraction=0.01: no knowledge document was held out"):
        prepare(cfg, tmp_path / "data")
    assert not (tmp_path / "data" / "manifest.json").exists()  # nothing a later rule would trust


def test_checkpoint_trained_on_other_data_is_refused(tmp_path):
    cell, data = tmp_path / "cell", tmp_path / "data"
    common.write_json(cell / "train.json", {"provenance": {"tokenizer_sha256": "a" * 64}})
    common.write_json(data / "manifest.json", {"tokenizer": {"sha256": "b" * 64}})
    with pytest.raises(ValueError, match="trained with tokenizer aaaaaaaaaaaa but .* holds bbbbbbbbbbbb"):
        load_cell(cell, data)


def test_torn_json_record_names_the_file(tmp_path):
    (tmp_path / "train.json").write_text('{"final_loss": 3.1, "cur')  # a writer killed mid-way
    with pytest.raises(ValueError, match="train.json: training record is not valid JSON"):
        common.read_json(tmp_path / "train.json", "training record")
    with pytest.raises(FileNotFoundError, match="eval.json: eval record not found"):
        common.read_json(tmp_path / "eval.json", "eval record")


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    p = tmp_path / "t.json"
    common.write_json(p, {"v": 1})
    with pytest.raises(RuntimeError), common.atomic_path(p) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("killed")
    assert json.loads(p.read_text()) == {"v": 1}
    assert [x.name for x in tmp_path.iterdir()] == ["t.json"]  # no stray temp file either
