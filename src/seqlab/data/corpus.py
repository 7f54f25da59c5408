"""From paths to documents, and from documents to cached token arrays.

The held-out split is deterministic: the last `val_fraction` of every document
(or the files given with --val). Each held-out span keeps up to CONTEXT_TOKENS of
the text before it as context, so the model is scored on held-out bytes given
what precedes them, as a compressor is (size(train + val) - size(train)).
"""

import glob
import hashlib
import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import SeqlabError
from ..options import corpus_path, is_run, walk_files
from .tokenizer import Backward

CONTEXT_TOKENS = 2048  # preceding tokens kept before each held-out span
CACHE_VERSION = 2  # 2: per-document training sizes in index.json


@dataclass
class Document:
    name: str
    data: bytes


def default_corpus_path() -> str:
    return str(resources.files("seqlab") / "corpora" / "tinyshakespeare.txt")


def resolve_paths(patterns: list[str]) -> list[Path]:
    """Expand files, directories (recursively, skipping hidden entries and seqlab runs) and globs."""
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise SeqlabError(f"no files match {pattern!r}")
        for match in matches:
            path = Path(match)
            if not path.exists() or is_run(path):  # a run's checkpoint and history are not text
                raise SeqlabError(corpus_path.problem(match))
            found.extend(walk_files(path) if path.is_dir() else [path])
    return list(dict.fromkeys(found))


def read_documents(patterns: list[str], text_field: str = "") -> list[Document]:
    """Every file is a document; with `text_field`, every record of a JSONL, CSV or Parquet file is one."""
    docs = []
    for path in resolve_paths(patterns):
        if text_field and path.suffix.lower() in RECORD_FORMATS:
            docs.extend(read_records(path, text_field))
        elif path.suffix.lower() == ".parquet":
            raise SeqlabError(f"{path} is a Parquet table; name the column that holds the text with --text-field "
                              f"(its fields: {', '.join(_table(path, None).column_names)})")
        else:
            try:
                docs.append(Document(str(path), path.read_bytes()))
            except OSError as e:
                raise SeqlabError(f"cannot read {path}: {e.strerror}") from None
    if not any(d.data for d in docs):
        raise SeqlabError(f"the corpus is empty: {', '.join(patterns)} holds no bytes")
    return docs


RECORD_FORMATS = {".jsonl": "JSON lines", ".ndjson": "JSON lines", ".csv": "CSV", ".parquet": "Parquet"}


def read_records(path: Path, field: str) -> list[Document]:
    """The text in `field` of each record of a JSONL, CSV or Parquet file (read with pyarrow), one document
    per record, in file order; records whose field is empty or null are left out. Every record is named
    after its file, so `--style-by file` or `dir` gives all of a file's records one style."""
    table = _table(path, field)
    if field not in table.column_names:
        raise SeqlabError(f"{path} has no field {field!r}; its fields: {', '.join(table.column_names)} "
                          f"(choose one with --text-field)")
    column = table.column(field)
    import pyarrow as pa

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise SeqlabError(f"field {field!r} of {path} holds {column.type}, not text; choose a text field with "
                          f"--text-field (its fields: {', '.join(table.column_names)})")
    return [Document(str(path), text.encode()) for text in column.to_pylist() if text]


def _table(path: Path, field: str | None):
    """The file as a pyarrow Table (CSV: `field` read as text, whatever its values look like)."""
    import pyarrow as pa
    from pyarrow import csv, json, parquet

    kind = RECORD_FORMATS[path.suffix.lower()]
    try:
        if kind == "Parquet":  # columnar: read only the text when it is there
            return parquet.read_table(path, columns=[field] if field in parquet.read_schema(path).names else None)
        if kind == "CSV":
            return csv.read_csv(path, convert_options=csv.ConvertOptions(column_types={field: pa.string()}
                                                                         if field else {}))
        return json.read_json(path)
    except (pa.ArrowException, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SeqlabError(f"cannot read {path} as {kind}: {first}") from None


@dataclass
class HeldOut:
    """One document's held-out tokens with the context that precedes them."""

    name: str
    tokens: np.ndarray  # context followed by the scored tokens
    n_context: int
    n_bytes: int  # bytes of the scored part

    @property
    def scored(self) -> np.ndarray:
        return self.tokens[self.n_context :]


@dataclass
class TokenData:
    train: np.ndarray  # BOS doc1 BOS doc2 ...  (memory-mapped)
    train_bytes: int
    held_out: list[HeldOut]
    doc_tokens: list[int]  # tokens of each training document in `train` (its BOS included), in corpus order
    doc_bytes: list[int]  # training bytes of each document

    @property
    def val_bytes(self) -> int:
        return sum(h.n_bytes for h in self.held_out)

    @property
    def val_tokens(self) -> int:
        return sum(len(h.scored) for h in self.held_out)


def split_document(data: bytes, val_fraction: float) -> tuple[bytes, bytes]:
    n_val = math.ceil(len(data) * val_fraction)
    return data[: len(data) - n_val], data[len(data) - n_val :]


def encode_corpus(docs, val_docs, tokenizer, val_fraction: float, cache_root: Path) -> TokenData:
    """Tokenise the corpus once; later calls with the same bytes and tokenizer reuse the arrays."""
    key = _cache_key(docs, val_docs, tokenizer, val_fraction)
    cache = cache_root / key
    if not (cache / "index.json").exists():
        _encode_to(cache, docs, val_docs, tokenizer, val_fraction)
    return _open_cached(cache)


def _cache_key(docs, val_docs, tokenizer, val_fraction) -> str:
    h = hashlib.blake2b(digest_size=16)
    backward = ["backward"] if isinstance(tokenizer, Backward) else []  # same bytes, other token arrays
    h.update(json.dumps([CACHE_VERSION, val_fraction, tokenizer.to_json()] + backward).encode())
    for tag, group in (b"train", docs), (b"val", val_docs):
        h.update(tag)
        for d in group:
            h.update(d.name.encode() + b"\0" + len(d.data).to_bytes(8, "little"))
            h.update(d.data)
    return h.hexdigest()


def _encode_to(cache: Path, docs, val_docs, tokenizer, val_fraction: float) -> None:
    bos = tokenizer.bos_id
    train_parts, held_out, doc_bytes = [], [], []
    for doc in docs:
        train_part, val_part = split_document(doc.data, 0.0 if val_docs else val_fraction)
        train_ids = np.concatenate([[bos], tokenizer.encode(train_part)])
        train_parts.append(train_ids)
        doc_bytes.append(len(train_part))
        if val_part:
            context = train_ids[-CONTEXT_TOKENS:]
            held_out.append((doc.name, context, tokenizer.encode(val_part), len(val_part)))
    for doc in val_docs:
        held_out.append((doc.name, np.array([bos]), tokenizer.encode(doc.data), len(doc.data)))
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.int32
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.concatenate(train_parts).astype(dtype).tofile(tmp / "train.bin")
    val_arrays = [np.concatenate([c, s]) for _, c, s, _ in held_out] or [np.zeros(0)]
    np.concatenate(val_arrays).astype(dtype).tofile(tmp / "val.bin")
    index = {
        "dtype": np.dtype(dtype).name,
        "train_bytes": sum(doc_bytes),
        "doc_tokens": [len(t) for t in train_parts],
        "doc_bytes": doc_bytes,
        "held_out": [
            {"name": name, "n_context": len(c), "n_scored": len(s), "n_bytes": n}
            for name, c, s, n in held_out
        ],
    }
    (tmp / "index.json").write_text(json.dumps(index))
    try:
        os.replace(tmp, cache)
    except OSError:  # another process cached the same corpus first
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


def _open_cached(cache: Path) -> TokenData:
    index = json.loads((cache / "index.json").read_text())
    dtype = np.dtype(index["dtype"])
    train = np.memmap(cache / "train.bin", dtype=dtype, mode="r")
    val = np.fromfile(cache / "val.bin", dtype=dtype).astype(np.int64)
    held_out, at = [], 0
    for h in index["held_out"]:
        n = h["n_context"] + h["n_scored"]
        held_out.append(HeldOut(h["name"], val[at : at + n], h["n_context"], h["n_bytes"]))
        at += n
    return TokenData(train, index["train_bytes"], held_out, index["doc_tokens"], index["doc_bytes"])


def cache_root() -> Path:
    base = os.environ.get("SEQLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "seqlab")
    return Path(base) / "tokens"
