"""One byte-level BPE tokenizer per study, trained on a fixed sample of both sources.

Byte-level means every string encodes (no unknown tokens), and bits per byte computed from
token log-likelihoods do not depend on the vocabulary. `ByteTokenizer` (256 ids, one per
byte) is the vocabulary-free reference used in tests.
"""

from __future__ import annotations

from pathlib import Path

EOS = "<|endoftext|>"


class BPETokenizer:
    # a pretrained tokenizer's document separator: the first of these it has
    EOS_NAMES = (EOS, "</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>".upper())

    def __init__(self, tok):
        self._tok = tok
        self.eos_id = next((i for i in map(tok.token_to_id, self.EOS_NAMES) if i is not None), None)
        self.vocab_size = tok.get_vocab_size()

    @classmethod
    def train(cls, texts, vocab_size: int) -> BPETokenizer:
        # deferred: the tokenizers library: only where a tokenizer is trained or loaded
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        # deferred: the tokenizers library: only where a tokenizer is trained or loaded
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        self._tok.save(str(path))

    def encode(self, text: str) -> list[int]:
        # no BOS/EOS a pretrained tokenizer's post-processor would add: documents are
        # separated by EOS explicitly (a tokenizer trained here has no post-processor)
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # the same ids; the _fast variant (tokenizers >= 0.21) skips the character offsets
        enc = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [e.ids for e in enc(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))


class ByteTokenizer:
    """One token per UTF-8 byte; id 0 (NUL) doubles as the document separator."""

    vocab_size = 256
    eos_id = 0

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")
