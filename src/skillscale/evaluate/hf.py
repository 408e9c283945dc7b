"""Score any local Hugging Face causal LM on a study's skill metrics and benchmarks.

The same lm-eval tasks, documents and `SkillscaleLM` windowing as a cell's own
evaluation, so a published model (a Pythia or SmolLM checkpoint on disk) lands on the
study's axes in bits per byte; bits per byte do not depend on the tokenizer as long as
it encodes every text to exactly its bytes (byte-level BPE tokenizers do; SentencePiece
ones that add a prefix space to each piece count a byte the text does not have).

    skillscale evaluate-hf MODEL_DIR --data results/<study>/data [--out FILE]
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from skillscale import common


class HFLogits(torch.nn.Module):
    """ids -> logits of a transformers causal LM (right padding needs no mask: it is causal)."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, idx):
        return self.hf(input_ids=idx).logits


class HFTokenizer:
    """The two things SkillscaleLM asks of a tokenizer, from a transformers tokenizer."""

    def __init__(self, tok):
        self.tok = tok
        self.eos_id = tok.eos_token_id if tok.eos_token_id is not None else tok.bos_token_id
        if self.eos_id is None:
            raise ValueError(
                f"{tok.name_or_path}: tokenizer has neither an eos nor a bos token to start an empty context with"
            )

    def encode(self, text: str) -> list[int]:
        # verbose=False: texts longer than the context are fine, SkillscaleLM windows them
        return self.tok(text, add_special_tokens=False, verbose=False)["input_ids"]


def param_counts(hf) -> dict[str, int]:
    """Our N convention (every weight but the input embedding lookup, head included) and the total."""
    total = sum(p.numel() for p in hf.parameters())
    emb = hf.get_input_embeddings().weight
    tied = hf.get_output_embeddings() is not None and hf.get_output_embeddings().weight is emb
    return {"n_params": total - (0 if tied else emb.numel()), "n_params_total": total}


def load(model_dir: Path, device: str, dtype: str = "float32"):
    try:
        # deferred: transformers: an optional extra, needed on this path only
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ImportError("evaluate-hf needs transformers: pip install 'skillscale[hf]'") from e
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir}: no config.json; expected a local Hugging Face model folder")
    # deferred: transformers: an optional extra, needed on this path only
    import transformers
    from packaging.version import Version

    # transformers renamed torch_dtype to dtype in 4.56
    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), **{key: getattr(torch, dtype)}).eval().to(device)
    return hf, AutoTokenizer.from_pretrained(str(model_dir))


def evaluate_hf(
    model_dir: Path,
    data_dir: Path,
    benchmarks=None,
    seq_len: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    dtype: str = "float32",
) -> dict:
    """Score MODEL_DIR on every skill metric of DATA (and its prepared benchmarks)."""
    # deferred: lm-eval takes seconds to import: only when scoring
    from skillscale.evaluate.harness import SkillscaleLM, score

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data_dir = Path(data_dir)
    if benchmarks is None:  # the study's own: whatever its data folder prepared
        m = data_dir / "benchmarks" / "manifest.json"
        benchmarks = sorted(common.read_json(m, "benchmark manifest")) if m.exists() else []
    hf, tok = load(model_dir, device, dtype)
    ctx = seq_len or getattr(hf.config, "max_position_embeddings", None) or 2048
    t0 = time.time()
    lm = SkillscaleLM(HFLogits(hf), HFTokenizer(tok), ctx, batch_size, device)
    with torch.no_grad():
        scores = score(lm, data_dir, benchmarks)
    return {
        "model": str(Path(model_dir).resolve()),
        "data": str(data_dir.resolve()),
        **scores,
        **param_counts(hf),
        "seq_len": ctx,
        "dtype": dtype,
        "wall_seconds": round(time.time() - t0, 2),
        "provenance": common.provenance(device=device),
    }
