"""Vectors of the `words` pooling (embed.pool_words): a sparse bag of a passage's words beside a dense part.

    vecs = embed_texts(run, texts, "words")      # a BagVectors
    vecs.scores(others)                          # (len(vecs), len(others)) cosines

A word is a run of letters and digits in any script (the text read as UTF-8; a byte that is not UTF-8 separates
words), lowercased, hashed into one of 2**WORD_BITS columns (crc32 of its UTF-8: the same column on every machine).
Of 100,000 distinct words about one in eleven shares its column with another; on the retrieval benchmark's
paragraphs 2**20 columns ranked exactly as an exact vocabulary did, where 2**16 lost a little and 2**12 a lot
(docs/vectors.md), which is why the bag stays sparse rather than folded into a dense vector.
"""

import json
import re
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

WORD_BITS = 20
WORD = re.compile(r"[^\W_]+")  # letters and digits: \w without the underscore
SCORES = 1 << 24  # cosines computed at once by top (64 MB): queries are taken a few at a time against a large index


def word_occurrences(token_bytes: list[bytes], ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """The words of the text `ids` spell: (token, occurrence, share) triples, each token's share of its bytes in
    that occurrence (a token's bits are spread evenly over its bytes), and each occurrence's column."""
    lengths = np.array([len(token_bytes[i]) for i in ids], dtype=np.int64)
    text = b"".join(token_bytes[i] for i in ids).decode("utf-8", errors="surrogateescape")
    token_of_byte = np.repeat(np.arange(len(ids)), lengths)
    at = _byte_offsets(text)
    tokens, occurrence, share, columns = [], [], [], []
    for o, m in enumerate(WORD.finditer(text)):
        which, n_bytes = np.unique(token_of_byte[at[m.start()] : at[m.end()]], return_counts=True)
        tokens.append(which)
        occurrence.append(np.full(len(which), o))
        share.append(n_bytes / lengths[which])
        columns.append(zlib.crc32(m.group().lower().encode("utf-8", errors="surrogateescape")) & ((1 << WORD_BITS) - 1))
    if not columns:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return (np.concatenate(tokens), np.concatenate(occurrence), np.concatenate(share).astype(np.float32),
            np.array(columns, np.int64))


def _byte_offsets(text: str) -> np.ndarray:
    """(len(text) + 1,) the UTF-8 byte offset of each character of `text` and of its end (a byte surrogateescape
    kept is one byte)."""
    code = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), np.uint32)
    size = 1 + (code >= 0x80) + (code >= 0x800) + (code >= 0x10000)
    size[(code >= 0xDC80) & (code <= 0xDCFF)] = 1
    return np.concatenate([[0], np.cumsum(size)])


@dataclass
class BagVectors:
    """Unit vectors in two parts: words (n, 2**WORD_BITS) sparse, expected (n, V) dense; each part holds its half of
    a vector's length (each scaled to 1/sqrt(2)), so a cosine is the sum of the parts' dot products."""

    words: sparse.csr_matrix
    expected: np.ndarray
    _columns: sparse.csc_matrix | None = field(default=None, repr=False, compare=False)  # words by column, once

    def __len__(self) -> int:
        return self.words.shape[0]

    @property
    def dim(self) -> int:
        return self.words.shape[1] + self.expected.shape[1]

    def scores(self, other: "BagVectors") -> np.ndarray:
        """(len(self), len(other)) cosines: the word parts through `other`'s columns (its inverted index: for each
        word, the rows that hold it), so only the columns these rows hold are read, and the dense parts by BLAS."""
        if other._columns is None:
            other._columns = other.words.tocsc()
        held = np.unique(self.words.indices)
        if not len(held):
            return self.expected @ other.expected.T
        mine = sparse.csr_matrix((self.words.data, np.searchsorted(held, self.words.indices), self.words.indptr),
                                 shape=(len(self), len(held)))
        return (mine @ other._columns[:, held].T).toarray() + self.expected @ other.expected.T

    def top(self, other: "BagVectors", k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k best rows of `other` for each row of self, best first (ties: the lower id), a
        few rows of self at a time (at most SCORES cosines held at once)."""
        k = min(k, len(other))
        step = max(1, SCORES // max(len(other), 1))
        best_s, best_i = [], []
        for at in range(0, len(self), step):
            s = self[at : at + step].scores(other).astype(np.float32, copy=False)
            part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(k), (len(s), 1))
            order = np.lexsort((part, -np.take_along_axis(s, part, 1)), axis=1)
            ids = np.take_along_axis(part, order, 1)
            best_s.append(np.take_along_axis(s, ids, 1))
            best_i.append(ids.astype(np.int64))
        return np.concatenate(best_s), np.concatenate(best_i)

    def __getitem__(self, rows: slice) -> "BagVectors":
        return BagVectors(self.words[rows], self.expected[rows])

    @classmethod
    def concat(cls, parts: list["BagVectors"]) -> "BagVectors":
        return cls(sparse.vstack([p.words for p in parts], format="csr"), np.concatenate([p.expected for p in parts]))

    def arrays(self, dtype=np.float32) -> dict[str, np.ndarray]:
        """The tensors a safetensors file holds, the values in `dtype` (from_arrays reads them back)."""
        w = self.words
        return {"indptr": w.indptr.astype(np.int64), "indices": w.indices.astype(np.int32),
                "values": w.data.astype(dtype), "expected": np.ascontiguousarray(self.expected, dtype=dtype)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "BagVectors":
        """Float32 whatever the file's values (scipy's sparse matrices hold no float16)."""
        n = len(arrays["indptr"]) - 1
        words = sparse.csr_matrix((arrays["values"].astype(np.float32), arrays["indices"], arrays["indptr"]),
                                  shape=(n, 1 << WORD_BITS))
        return cls(words, arrays["expected"].astype(np.float32))


SAFETENSORS_DTYPES = {np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.float32): "F32",
                      np.dtype(np.float16): "F16"}


def safetensors_header(tensors: dict[str, tuple[np.dtype, tuple]], metadata: dict | None = None) -> bytes:
    """A safetensors file's first bytes for tensors of these (dtype, shape), in this order, their data to follow."""
    header, at = {}, 0
    for name, (dtype, shape) in tensors.items():
        n_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": SAFETENSORS_DTYPES[np.dtype(dtype)], "shape": list(shape),
                        "data_offsets": [at, at + n_bytes]}
        at += n_bytes
    if metadata:
        header["__metadata__"] = {k: json.dumps(v) for k, v in metadata.items()}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    return len(raw).to_bytes(8, "little") + raw


def save(vectors: BagVectors, path) -> None:
    """The vectors as one safetensors file (BagVectors.arrays' tensors), written straight from their arrays."""
    arrays = vectors.arrays()
    with open(path, "wb") as f:
        f.write(safetensors_header({k: (a.dtype, a.shape) for k, a in arrays.items()}))
        for a in arrays.values():
            f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
