"""Tokenizers that round-trip any bytes: plain bytes, or a byte-level BPE.

Both reserve one extra id, BOS, that starts every document. It is never produced
by encoding text, so a document can contain any bytes at all, "<|doc|>" included.
"""

import json
import re
from pathlib import Path

import numpy as np

from ..errors import SeqlabError
from .byte_chars import BYTE_TO_CHAR, CHAR_TO_BYTE, to_chars
from .hf_tokenizer import HFTokenizer

TOKENIZER_FILE = "tokenizer.json"


class ByteTokenizer:
    """One token per byte; id 256 is BOS."""

    kind = "byte"

    def __init__(self):
        self.vocab_size = 257
        self.bos_id = 256
        self.token_bytes = [bytes([i]) for i in range(256)] + [b""]

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> bytes:
        return bytes(i for i in ids if i != self.bos_id)

    def to_json(self) -> str:
        return json.dumps({"seqlab_tokenizer": "byte", "vocab_size": self.vocab_size})


class Backward:
    """A tokenizer that reads text right to left: a backward run's (`seqlab train --backward`).

    Encoding reverses the bytes first and decoding reverses them back, so a backward run's held-out
    split, eval and compress take the same bytes as a forward run's; token ids, token_bytes and BOS
    are the inner tokenizer's, in the order the model reads them. tokenizer.json is the inner's.
    """

    def __init__(self, inner):
        self.inner = inner

    def encode(self, data: bytes) -> np.ndarray:
        return self.inner.encode(data[::-1])

    def decode(self, ids) -> bytes:
        return self.inner.decode(ids)[::-1]

    def __getattr__(self, name):  # kind, vocab_size, bos_id, token_bytes, to_json
        return getattr(self.inner, name)


def reading(tokenizer, backward: bool):
    """The tokenizer as a run of this direction reads text."""
    return Backward(tokenizer) if backward else tokenizer


def _split_pattern() -> str:
    """GPT-2-like pre-tokenisation, written over the mapped characters.

    Letters include every byte >= 0x80 so a UTF-8 word stays one piece.
    """
    def cls(byte_values):
        return "".join(re.escape(BYTE_TO_CHAR[b]) for b in byte_values)

    letters = cls(list(range(65, 91)) + list(range(97, 123)) + list(range(128, 256)))
    digits = cls(range(48, 58))
    space, newline = re.escape(BYTE_TO_CHAR[32]), re.escape(BYTE_TO_CHAR[10])
    return (
        f"{space}?[{letters}]+|{space}?[{digits}]+|{space}?[^{letters}{digits}{space}{newline}]+"
        f"|{newline}+|{space}+"
    )


class BPETokenizer:
    """Byte-level BPE trained with Hugging Face `tokenizers`; BOS is the last id."""

    kind = "bpe"

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.bos_id = hf_tokenizer.get_vocab_size()
        self.vocab_size = self.bos_id + 1
        vocab = hf_tokenizer.get_vocab()
        self.token_bytes = [b""] * self.vocab_size
        for piece, i in vocab.items():
            self.token_bytes[i] = bytes(CHAR_TO_BYTE[c] for c in piece)

    @classmethod
    def train(cls, texts, vocab_size: int) -> "BPETokenizer":
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

        if vocab_size < 258:
            raise SeqlabError(f"bpe vocabulary must be at least 258 (256 bytes + 1 merge + BOS), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(_split_pattern()), behavior="isolated")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - 1,
            initial_alphabet=list(BYTE_TO_CHAR.values()),
            show_progress=False,
        )
        tok.train_from_iterator((to_chars(t) for t in texts), trainer=trainer)
        return cls(tok)

    def encode(self, data: bytes) -> np.ndarray:
        if not data:
            return np.zeros(0, dtype=np.int64)
        # Encode line by line: bounded memory on large files, and parallel in tokenizers.
        lines = data.splitlines(keepends=True)
        encoded = self.hf.encode_batch([to_chars(line) for line in lines], add_special_tokens=False)
        return np.fromiter((i for e in encoded for i in e.ids), dtype=np.int64)

    def decode(self, ids) -> bytes:
        return b"".join(self.token_bytes[i] for i in ids)

    def to_json(self) -> str:
        return self.hf.to_str()


def parse_tokenizer_spec(spec: str) -> tuple[str, int]:
    if spec == "byte":
        return "byte", 257
    m = re.fullmatch(r"bpe:(\d+)", spec)
    if not m:
        raise SeqlabError(f"unknown tokenizer {spec!r}; use 'byte' or 'bpe:VOCAB' (e.g. bpe:1024)")
    return "bpe", int(m.group(1))


def build_tokenizer(spec: str, texts_for_training) -> ByteTokenizer | BPETokenizer:
    if spec.startswith("hf:"):  # a pretrained checkpoint's own tokenizer (seqlab train --init)
        from ..pretrained import checkpoint_tokenizer

        return checkpoint_tokenizer(spec[3:])
    kind, vocab = parse_tokenizer_spec(spec)
    if kind == "byte":
        return ByteTokenizer()
    return BPETokenizer.train(texts_for_training(), vocab)


def save_tokenizer(tokenizer, run_dir: Path) -> None:
    from ..checkpoint import atomic_write_text

    atomic_write_text(run_dir / TOKENIZER_FILE, tokenizer.to_json())


def load_tokenizer(run_dir: Path):
    path = run_dir / TOKENIZER_FILE
    try:
        text = path.read_text()
    except OSError as e:
        raise SeqlabError(f"cannot read tokenizer {path}: {e.strerror}") from None
    return tokenizer_from_text(text)


def tokenizer_from_text(text: str):
    kind = json.loads(text).get("seqlab_tokenizer")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "hf":
        return HFTokenizer.from_text(text)
    from tokenizers import Tokenizer

    return BPETokenizer(Tokenizer.from_str(text))
