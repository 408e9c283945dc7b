"""Export a trained cell as a Hugging Face `LlamaForCausalLM` folder.

Our decoder (skillscale.model.decoder) is a Llama: RMSNorm (eps 1e-6, as LlamaConfig's default),
rotary positions with base 10000 rotating the two *halves* of each head (HF's
`rotate_half` convention, so q/k weights need no permutation), SwiGLU, no biases, an
untied output head. It fuses what Llama keeps apart, so the export splits tensors:

    ours                              transformers
    embed.weight                      model.embed_tokens.weight
    blocks.i.attn_norm.weight         model.layers.i.input_layernorm.weight
    blocks.i.qkv.weight  [3d, d]      model.layers.i.self_attn.{q,k,v}_proj.weight  [d, d] each
    blocks.i.proj.weight              model.layers.i.self_attn.o_proj.weight
    blocks.i.mlp_norm.weight          model.layers.i.post_attention_layernorm.weight
    blocks.i.gate_up.weight [2f, d]   model.layers.i.mlp.{gate,up}_proj.weight  [f, d] each
    blocks.i.down.weight              model.layers.i.mlp.down_proj.weight
    norm.weight                       model.norm.weight
    head.weight                       lm_head.weight

Needs no transformers: config.json, model.safetensors, tokenizer.json (the study's own
byte-level BPE), tokenizer_config.json and special_tokens_map.json are written directly,
plus skillscale_export.json saying which cell and data made it. The folder appears whole
or not at all (written beside OUT, renamed into place).

    skillscale export results/<study>/cells/<cell> OUT [--data results/<study>/data]
    skillscale export results/<study> OUT --all      # every trained cell, OUT/<cell>/
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from skillscale import common
from skillscale.data.tokenizer import EOS
from skillscale.model.decoder import RMSNorm, rotary_tables
from skillscale.model.shapes import ModelShape

MARKER = "skillscale_export.json"
ROPE_THETA = 10000.0
# the conventions the mapping relies on, read from the model code itself (see check_conventions)
RMS_EPS = RMSNorm(1).eps


class ExportError(ValueError):
    """An export that cannot be written as asked (names the folder or file)."""


def check_conventions() -> None:
    """Fail loudly if model.py's rotary or norm drift from what Llama computes."""
    cos, sin = rotary_tables(4, 8, ROPE_THETA)
    inv = 1.0 / ROPE_THETA ** (torch.arange(0, 8, 2).float() / 8)
    freqs = torch.outer(torch.arange(4).float(), inv)
    emb = torch.cat([freqs, freqs], -1)  # HF LlamaRotaryEmbedding: halves, not interleaved pairs
    assert torch.allclose(cos, emb.cos()) and torch.allclose(sin[:, 4:], emb.sin()[:, 4:])
    assert torch.allclose(sin[:, :4], -emb.sin()[:, :4])  # sign folded: x*cos + (x2, x1)*sin == rotate_half
    assert RMS_EPS == 1e-6


def hf_config(shape: dict, eos_id: int) -> dict:
    d, h = shape["d_model"], shape["n_heads"]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": shape["vocab_size"],
        "hidden_size": d,
        "intermediate_size": _d_ff(shape),
        "num_hidden_layers": shape["n_layers"],
        "num_attention_heads": h,
        "num_key_value_heads": h,
        "head_dim": d // h,
        "hidden_act": "silu",
        "max_position_embeddings": shape["seq_len"],  # the context the model was trained on
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,  # transformers 4.x
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},  # transformers 5
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": eos_id,
        "torch_dtype": "float32",
    }


def _d_ff(shape: dict) -> int:
    return ModelShape(**shape).d_ff


def to_hf_state(state: dict, shape: dict) -> dict:
    """Our state dict -> LlamaForCausalLM's, key by key, every shape asserted."""
    d, f, v, n = shape["d_model"], _d_ff(shape), shape["vocab_size"], shape["n_layers"]

    def take(key, want):
        t = state.pop(key)
        assert tuple(t.shape) == want, f"{key}: shape {tuple(t.shape)}, expected {want}"
        return t.contiguous()

    out = {"model.embed_tokens.weight": take("embed.weight", (v, d))}
    for i in range(n):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        # qkv rows are [q; k; v], each head-major (H, d_head): exactly HF's q/k/v_proj rows
        q, k, vv = take(src + "qkv.weight", (3 * d, d)).split(d, dim=0)
        gate, up = take(src + "gate_up.weight", (2 * f, d)).split(f, dim=0)  # forward() chunks gate first
        out.update(
            {
                dst + "input_layernorm.weight": take(src + "attn_norm.weight", (d,)),
                dst + "self_attn.q_proj.weight": q.contiguous(),
                dst + "self_attn.k_proj.weight": k.contiguous(),
                dst + "self_attn.v_proj.weight": vv.contiguous(),
                dst + "self_attn.o_proj.weight": take(src + "proj.weight", (d, d)),
                dst + "post_attention_layernorm.weight": take(src + "mlp_norm.weight", (d,)),
                dst + "mlp.gate_proj.weight": gate.contiguous(),
                dst + "mlp.up_proj.weight": up.contiguous(),
                dst + "mlp.down_proj.weight": take(src + "down.weight", (d, f)),
            }
        )
    out["model.norm.weight"] = take("norm.weight", (d,))
    out["lm_head.weight"] = take("head.weight", (v, d))
    assert not state, f"weights left unmapped: {sorted(state)}"
    return out


def tokenizer_files(tokenizer_json: Path, seq_len: int) -> dict[str, str]:
    """File name -> text of the tokenizer files PreTrainedTokenizerFast loads."""
    special = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": seq_len,
        "add_bos_token": False,  # training never saw one: documents are separated by EOS only
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
    }
    return {
        "tokenizer.json": Path(tokenizer_json).read_text(),
        "tokenizer_config.json": json.dumps(cfg, indent=1) + "\n",
        "special_tokens_map.json": json.dumps(special, indent=1) + "\n",
    }


def _check_target(out: Path) -> None:
    """OUT may be new, empty, or an earlier skillscale export (replaced); nothing else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder; choose another export folder")
    entries = list(out.iterdir())
    if entries and not (out / MARKER).exists():
        raise ExportError(
            f"{out}: exists and holds other files ({', '.join(sorted(e.name for e in entries)[:5])});"
            " an export replaces only an empty folder or an earlier export"
        )


def export_cell(cell_dir: Path, out: Path, data_dir: Path | None = None) -> dict:
    """Write OUT as a LlamaForCausalLM folder for one trained cell; return its marker record."""
    # deferred: safetensors: only where weights are written or read
    from safetensors.torch import load_file, save_file

    # deferred: lm-eval takes seconds to import: only when scoring
    from skillscale.evaluate.harness import load_cell

    check_conventions()
    cell_dir, out = Path(cell_dir), Path(out)
    data_dir = Path(data_dir) if data_dir else cell_dir.parent.parent / "data"
    _check_target(out)
    _, tok, rec = load_cell(cell_dir, data_dir)  # checks the tokenizer is the one it trained with
    shape = rec["cell"]["shape"]
    state = to_hf_state(load_file(str(cell_dir / "model.safetensors")), shape)
    marker = {
        "cell": rec["cell"]["cell"],
        "cell_dir": str(cell_dir.resolve()),
        "data_dir": str(data_dir.resolve()),
        "diverged": rec["diverged"],
        "n_params": rec["cell"].get("n_params"),
        "tokens": rec["cell"].get("tokens"),
        "provenance": rec["provenance"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config(shape, tok.eos_id), indent=1) + "\n")
        (tmp / "generation_config.json").write_text(
            json.dumps({"bos_token_id": tok.eos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.eos_id}, indent=1)
            + "\n"
        )
        for name, text in tokenizer_files(data_dir / "tokenizer.json", shape["seq_len"]).items():
            (tmp / name).write_text(text)
        (tmp / MARKER).write_text(json.dumps(marker, indent=1, default=common._jsonable) + "\n")
        os.chmod(tmp, 0o755)
        _check_target(out)  # again, just before replacing
        if out.exists():  # an empty folder or an earlier export: swap, then remove the old one
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return marker


def export_study(study_dir: Path, out: Path) -> list[str]:
    """Every trained cell of a study folder into OUT/<cell>/; returns the cells exported."""
    study_dir, out = Path(study_dir), Path(out)
    cells = sorted(
        p.parent for p in (study_dir / "cells").glob("*/model.safetensors") if (p.parent / "train.json").exists()
    )
    if not cells:
        raise ExportError(f"{study_dir}: no trained cells (cells/*/model.safetensors with train.json)")
    for c in cells:  # check every target first: no half-exported study because one name was taken
        _check_target(out / c.name)
    for c in cells:
        export_cell(c, out / c.name, study_dir / "data")
    return [c.name for c in cells]
