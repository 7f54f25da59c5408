"""A pretrained checkpoint's own byte-level BPE (GPT-2 family), behind seqlab's tokenizer contract.

GPT-2's BPE is byte-level: every byte has a token, so any bytes can be encoded,
not only valid UTF-8. Valid text goes through the checkpoint's Hugging Face
tokenizer unchanged (so the model sees the tokens it was trained on); a byte
that is not valid UTF-8 becomes its own single-byte token. Text is cut into
chunks only after a newline followed by a printable ASCII character, which is
always a boundary of GPT-2's pre-tokenisation, so chunking changes no token.

The checkpoint's <|endoftext|> token is BOS: it starts every document and, as
the special tokens are left out of the encoder, text never produces it.
"""

import json
import re
from pathlib import Path

import numpy as np

from ..errors import SeqlabError
from .byte_chars import BYTE_TO_CHAR, CHAR_TO_BYTE

ENDOFTEXT = "<|endoftext|>"
_CHUNK = re.compile(rb"(?<=\n)(?=[!-~])")
_INVALID = re.compile("([\udc80-\udcff]+)")  # undecodable bytes, as surrogateescape writes them
_PROBE = bytes(range(256)) + "  héllo, wörld 12\n\n  don't \u2028 \u00a0 x\r\n".encode()


class HFTokenizer:
    """Wraps a `tokenizers.Tokenizer`; `vocab_size` is the model's (it may exceed the tokenizer's)."""

    kind = "hf"

    def __init__(self, hf_tokenizer, bos_id: int, vocab_size: int):
        self.hf, self.bos_id, self.vocab_size = hf_tokenizer, bos_id, vocab_size
        vocab = hf_tokenizer.get_vocab(with_added_tokens=True)
        if max(vocab.values()) >= vocab_size or not 0 <= bos_id < vocab_size:
            raise SeqlabError(f"the tokenizer has ids up to {max(vocab.values())} (BOS {bos_id}) but the model "
                              f"only {vocab_size} embeddings; the checkpoint's tokenizer does not fit its config")
        missing = [b for b in range(256) if BYTE_TO_CHAR[b] not in vocab]
        if missing:
            raise SeqlabError(f"the checkpoint's tokenizer is not a byte-level BPE ({len(missing)} of the 256 "
                              f"byte tokens are missing); --init supports GPT-2-family tokenizers")
        self.byte_ids = np.array([vocab[BYTE_TO_CHAR[b]] for b in range(256)], dtype=np.int64)
        self.token_bytes = [b""] * vocab_size
        for piece, i in vocab.items():
            known = all(c in CHAR_TO_BYTE for c in piece)
            self.token_bytes[i] = bytes(CHAR_TO_BYTE[c] for c in piece) if known else piece.encode()
        self.token_bytes[bos_id] = b""
        self.encoder = _without_special_tokens(hf_tokenizer)
        if self.decode(self.encode(_PROBE)) != _PROBE:
            raise SeqlabError("the checkpoint's tokenizer does not round-trip bytes (it normalises text?); "
                              "--init supports GPT-2-family byte-level BPE tokenizers")

    @classmethod
    def from_pretrained(cls, path, vocab_size: int | None = None, bos_id: int | None = None) -> "HFTokenizer":
        """Read tokenizer.json, or vocab.json + merges.txt, from a checkpoint directory."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        path = Path(path)
        if (path / "tokenizer.json").exists():
            tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        elif (path / "vocab.json").exists() and (path / "merges.txt").exists():
            tok = Tokenizer(models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt")))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
        else:
            raise SeqlabError(f"{path} has no tokenizer (tokenizer.json, or vocab.json + merges.txt); "
                              f"save the tokenizer beside the model (tokenizer.save_pretrained)")
        if bos_id is None:
            bos_id = tok.token_to_id(ENDOFTEXT)
        if bos_id is None:
            raise SeqlabError(f"cannot tell the tokenizer's end-of-text token in {path}: set eos_token_id in "
                              f"config.json or add {ENDOFTEXT} to the vocabulary")
        return cls(tok, bos_id, vocab_size or tok.get_vocab_size(with_added_tokens=True))

    @classmethod
    def from_text(cls, text: str) -> "HFTokenizer":
        from tokenizers import Tokenizer

        saved = json.loads(text)
        return cls(Tokenizer.from_str(json.dumps(saved["tokenizer"])), saved["bos_id"], saved["vocab_size"])

    def encode(self, data: bytes) -> np.ndarray:
        texts, invalid = [], []  # invalid[k]: undecodable bytes that follow texts[k]
        for chunk in _CHUNK.split(data):
            parts = _INVALID.split(chunk.decode("utf-8", errors="surrogateescape"))
            for k in range(0, len(parts), 2):
                texts.append(parts[k])
                invalid.append(parts[k + 1] if k + 1 < len(parts) else "")
        encoded = self.encoder.encode_batch(texts, add_special_tokens=False) if texts else []
        ids = []
        for e, bad in zip(encoded, invalid):
            ids.extend(e.ids)
            ids.extend(int(self.byte_ids[ord(c) - 0xDC00]) for c in bad)
        return np.array(ids, dtype=np.int64)

    def decode(self, ids) -> bytes:
        return b"".join(self.token_bytes[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"seqlab_tokenizer": "hf", "bos_id": self.bos_id, "vocab_size": self.vocab_size,
                           "tokenizer": json.loads(self.hf.to_str())})


def _without_special_tokens(hf_tokenizer):
    """A copy that never matches added/special tokens in text and adds none around it."""
    from tokenizers import Tokenizer

    spec = json.loads(hf_tokenizer.to_str())
    spec["added_tokens"], spec["post_processor"] = [], None
    return Tokenizer.from_str(json.dumps(spec))
