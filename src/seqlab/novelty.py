"""`seqlab novelty`: was this text memorised? Exact longest matches against the training corpus.

For every position i of a text, the matching statistic ms[i] is the length of the
longest prefix of text[i:] that occurs in the corpus. It is exact: a suffix array
over the corpus bytes (libdivsufsort, via pydivsufsort) and binary searches.
Since ms[i+1] >= ms[i] - 1, each position starts from the previous answer minus
one and gallops upward, searching only inside the suffix-array interval of the
part already matched, so an n-byte text costs O(n) searches of O(m + log N) each.

Documents are joined with a separator byte, the corpus's rarest byte value (one
that never occurs, for text). A match that contains the separator byte is
checked against the document boundaries, so no match ever spans two files.

The index is built once and cached: RUN/novelty/ for a run (over the run's
training split: split_document with its val_fraction), the seqlab cache
directory for --corpus. The manifest records each file's size, mtime and content
hash; a changed corpus rebuilds the index.

    index = open_index(["notes/"])            # or run_index("runs/latest")
    report = novelty(index, b"some text", min_len=20)
    report["longest_copy"], report["copied_fraction"]
"""

import ctypes
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from .data.corpus import RECORD_FORMATS, cache_root, default_corpus_path, read_records, resolve_paths, split_document
from .errors import SeqlabError
from .options import corpus_path, integer, is_run, output_file, run_or_file
from .progress import bar, quiet

INDEX_VERSION = 3
MANIFEST = "manifest.json"


def _sa_search_fn(wide: bool):
    """Our own handle on libdivsufsort's sa_search: raw addresses let us search a sub-interval of the SA."""
    from pydivsufsort import dll

    lib = ctypes.CDLL((dll.libdivsufsort64 if wide else dll.libdivsufsort)._name)
    fn, idx = (lib.sa_search64, ctypes.c_int64) if wide else (lib.sa_search, ctypes.c_int32)
    fn.argtypes = [ctypes.c_void_p, idx, ctypes.c_void_p, idx, ctypes.c_void_p, idx, ctypes.POINTER(idx)]
    fn.restype = idx
    return fn, idx


class NoveltyIndex:
    """A suffix array over the corpus bytes plus where each document starts; see `matching_statistics`."""

    def __init__(self, directory: Path, built_now: bool = False):
        self.directory = directory
        self.built_now = built_now  # False when an existing cache was reused
        self.manifest = json.loads((directory / MANIFEST).read_text())
        self.corpus = np.load(directory / "corpus.npy", mmap_mode="r", allow_pickle=False)  # (N,) uint8
        self.sa = np.load(directory / "sa.npy", mmap_mode="r", allow_pickle=False)  # (N,) int32 or int64
        self.newlines = np.load(directory / "newlines.npy", mmap_mode="r", allow_pickle=False)  # offsets of b"\n"
        self.starts = np.array([f["start"] for f in self.manifest["files"]], dtype=np.int64)
        self.ends = self.starts + np.array([f["train_bytes"] for f in self.manifest["files"]], dtype=np.int64)
        self.separator = self.manifest["separator"]
        self._search, self._idx = _sa_search_fn(self.sa.dtype == np.int64)
        self._corpus_address, self._sa_address = self.corpus.ctypes.data, self.sa.ctypes.data

    @property
    def size(self) -> int:
        return len(self.corpus)

    def _find(self, address: int, m: int, lo: int, count: int) -> tuple[int, int]:
        """(count, first SA index) of the m bytes at `address` among suffixes SA[lo : lo + count]."""
        left = self._idx()
        sa = self._sa_address + lo * self.sa.itemsize
        found = self._search(self._corpus_address, self.size, address, m, sa, count, ctypes.byref(left))
        return found, lo + left.value

    def _within_documents(self, lo: int, count: int, m: int) -> np.ndarray:
        """Corpus offsets in SA[lo : lo + count] where m bytes fit inside one document."""
        pos = np.asarray(self.sa[lo : lo + count], dtype=np.int64)
        doc = np.searchsorted(self.starts, pos, side="right") - 1
        return pos[pos + m <= self.ends[doc]]

    def matching_statistics(self, text: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(lengths, offsets): text[i : i + lengths[i]] == corpus[offsets[i] : ...], lengths[i] maximal."""
        buf = np.frombuffer(text, dtype=np.uint8)
        n, base = len(buf), buf.ctypes.data
        seps = np.flatnonzero(buf == self.separator)
        next_sep = np.append(seps, n)[np.searchsorted(seps, np.arange(n + 1))].tolist()  # next separator >= i

        def occurs(i, m, lo, count):
            found, left = self._find(base + i, m, lo, count)
            if found and next_sep[i] < i + m and not len(self._within_documents(left, found, m)):
                return 0, left  # every occurrence straddles two documents
            return found, left

        lengths, offsets, length, offset = [0] * n, [-1] * n, 0, -1
        for i in range(n):
            # text[i : i + length] occurs at offset (the previous match minus its first byte): try to extend it.
            length, offset = max(length - 1, 0), offset + 1 if length > 1 else -1
            length, lo, count = self._extend(occurs, buf, i, length, n - i)
            if count:  # extended: take an occurrence from the interval of the longer match
                offset = self._first_offset(lo, count, length, next_sep[i] < i + length)
            lengths[i], offsets[i] = length, offset
        return np.array(lengths, dtype=np.int64), np.array(offsets, dtype=np.int64)

    def _extend(self, occurs, buf, i, length, limit):
        """Extend a known match one byte at a time: the classic matching-statistics walk, O(n) steps in all.

        Returns (length, lo, count): count is 0 when the known length could not be extended; else
        SA[lo : lo + count] holds the suffixes starting with the match. Only the first search spans the
        whole suffix array: a longer match's suffixes lie inside the shorter one's interval, and once a
        single suffix is left the rest is a plain byte comparison.
        """
        lo, count, extended = 0, self.size, False
        while length < limit:
            if count == 1 and extended:
                return self._extend_at(buf, int(self.sa[lo]), i, length, limit), lo, 1
            found, left = occurs(i, length + 1, lo, count)
            if not found:
                break
            length, lo, count, extended = length + 1, left, found, True
        return length, lo, count if extended else 0

    def _extend_at(self, buf, offset: int, i: int, length: int, limit: int) -> int:
        """Longest match of text[i:] at corpus[offset:], within offset's document, knowing `length` bytes agree."""
        end = int(self.ends[np.searchsorted(self.starts, offset, side="right") - 1])
        n = min(limit, end - offset)
        a = buf[i + length : i + n]
        b = np.asarray(self.corpus[offset + length : offset + n])
        differ = np.flatnonzero(a != b)
        return length + (int(differ[0]) if len(differ) else len(a))

    def _first_offset(self, lo: int, count: int, m: int, check: bool) -> int:
        if check:
            return int(self._within_documents(lo, count, m).min())
        return int(self.sa[lo])

    def first_occurrence(self, text: bytes) -> int:
        """The smallest corpus offset where all of `text` occurs (within one document), or -1."""
        buf = np.frombuffer(text, dtype=np.uint8)
        found, left = self._find(buf.ctypes.data, len(buf), 0, self.size)
        pos = self._within_documents(left, found, len(buf)) if found else np.zeros(0)
        return int(pos.min()) if len(pos) else -1

    def locate(self, offset: int) -> dict:
        """Corpus offset -> {file, line (1-based), offset (within the file)}."""
        k = int(np.searchsorted(self.starts, offset, side="right") - 1)
        start = int(self.starts[k])
        line = int(np.searchsorted(self.newlines, offset) - np.searchsorted(self.newlines, start)) + 1
        return {"file": self.manifest["files"][k]["name"], "line": line, "offset": int(offset - start)}


# ---- building and caching ------------------------------------------------------------------

def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _train_part(path: Path, val_fraction: float, text_field: str = "") -> bytes:
    if text_field and path.suffix.lower() in RECORD_FORMATS:  # records, one per line, as the run read them
        return b"\n".join(split_document(d.data, val_fraction)[0] for d in read_records(path, text_field))
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SeqlabError(f"cannot read {path}: {e.strerror}") from None
    return split_document(data, val_fraction)[0]


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _is_current(directory: Path, paths: list[Path], val_fraction: float, text_field: str) -> bool:
    """True when the cached index matches the corpus; unchanged stats skip re-reading the files."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    files = manifest.get("files", [])
    if (manifest.get("version") != INDEX_VERSION or manifest.get("val_fraction") != val_fraction
            or manifest.get("text_field", "") != text_field
            or [f["name"] for f in files] != [str(p) for p in paths]):
        return False
    touched = False
    for f, path in zip(files, paths):
        stat = _stat(path)
        if stat != {"size": f["size"], "mtime_ns": f["mtime_ns"]}:
            if _digest(_train_part(path, val_fraction, text_field)) != f["digest"]:
                return False
            f.update(stat)  # same bytes, new mtime (e.g. a touch): remember, so the next check is cheap
            touched = True
    if touched:
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return True


def _build(directory: Path, paths: list[Path], val_fraction: float, text_field: str) -> None:
    parts, files, at = [], [], 0
    with bar(total=sum(_stat(p)["size"] for p in paths), desc="novelty index: reading") as progress:
        for path in paths:
            stat = _stat(path)
            part = _train_part(path, val_fraction, text_field)
            files.append({"name": str(path), **stat, "digest": _digest(part), "start": at, "train_bytes": len(part)})
            parts.append(part)
            at += len(part) + 1
            progress.update(stat["size"])
    counts = np.bincount(np.frombuffer(b"".join(parts), dtype=np.uint8), minlength=256)
    if not counts.sum():
        raise SeqlabError(f"the corpus has no training bytes ({len(paths)} file(s), val_fraction {val_fraction})")
    separator = int(np.argmin(counts))  # a byte that never occurs, for text: no match can cross it
    corpus = bytes([separator]).join(parts)
    sa = _suffix_array(corpus)
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "corpus.npy", np.frombuffer(corpus, dtype=np.uint8), allow_pickle=False)
    np.save(tmp / "sa.npy", sa, allow_pickle=False)
    np.save(tmp / "newlines.npy", np.flatnonzero(np.frombuffer(corpus, dtype=np.uint8) == 10), allow_pickle=False)
    manifest = {"version": INDEX_VERSION, "val_fraction": val_fraction, "text_field": text_field,
                "separator": separator, "bytes": len(corpus), "files": files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def _suffix_array(corpus: bytes) -> np.ndarray:
    """libdivsufsort's suffix array (int32 below 2 GiB, int64 above). It gives no progress of its own, so it runs
    in a thread (the call releases the GIL) while a bar counts the seconds: 100 MB takes about 15 s of CPU."""
    from concurrent.futures import ThreadPoolExecutor, wait

    from pydivsufsort import divsufsort

    with ThreadPoolExecutor(1) as pool, bar(desc=f"novelty index: sorting {len(corpus):,} bytes",
                                            bar_format="{desc} {elapsed}") as b:
        job = pool.submit(divsufsort, corpus)
        while not wait([job], timeout=0.5).done:
            b.refresh()
        return job.result()


def open_index(patterns: list[str], directory: Path | None = None, val_fraction: float = 0.0,
               text_field: str = "") -> NoveltyIndex:
    """The index over the files `patterns` name (train part when val_fraction > 0), built or reused.
    text_field: JSONL/CSV/Parquet files are read as their records' text in that field, one per line."""
    paths = [p.resolve() for p in resolve_paths(patterns)]
    if directory is None:
        key = hashlib.blake2b(json.dumps([str(p) for p in paths]).encode(), digest_size=12).hexdigest()
        directory = cache_root().parent / "novelty" / f"{key}-{val_fraction}"
    directory = Path(directory)
    if _is_current(directory, paths, val_fraction, text_field):
        return NoveltyIndex(directory)
    _build(directory, paths, val_fraction, text_field)
    return NoveltyIndex(directory, built_now=True)


def run_index(run_dir) -> NoveltyIndex:
    """The index over a run's training split, cached in RUN/novelty/."""
    from .run import read_config

    data = read_config(Path(run_dir)).data
    patterns = data.paths or [default_corpus_path()]
    # Mirror encode_corpus: with explicit --val files every training document is used whole.
    fraction = 0.0 if data.val_paths else data.val_fraction
    try:
        return open_index(patterns, Path(run_dir) / "novelty", fraction, data.text_field)
    except SeqlabError as e:
        raise SeqlabError(f"{e} (the corpus of run {run_dir}; give it with --corpus PATH)") from None


# ---- the report ----------------------------------------------------------------------------

def _covered_spans(lengths: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of text bytes inside some copy of at least min_len bytes."""
    marks = np.zeros(len(lengths) + 1, dtype=np.int64)
    starts = np.flatnonzero(lengths >= min_len)
    np.add.at(marks, starts, 1)
    np.add.at(marks, starts + lengths[starts], -1)
    covered = np.concatenate([[0], (np.cumsum(marks[:-1]) > 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(covered))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def novelty(index: NoveltyIndex, text: bytes, min_len: int = 20) -> dict:
    """Longest copy (bytes, where in the corpus), copied fraction and the copied spans of `text`."""
    if min_len < 1:
        raise SeqlabError(f"--min-len must be at least 1, got {min_len}")
    lengths, offsets = index.matching_statistics(text)
    report = {"bytes": len(text), "min_len": min_len, "corpus_bytes": index.size,
              "longest_copy": 0, "longest_copy_at": None, "longest_copy_source": None, "longest_copy_text": ""}
    if len(text):
        i = int(np.argmax(lengths))
        n = int(lengths[i])
        report["longest_copy"] = n
        if n:
            report["longest_copy_at"] = i
            report["longest_copy_source"] = index.locate(index.first_occurrence(text[i : i + n]))
            report["longest_copy_text"] = text[i : i + n].decode("utf-8", errors="replace")
    spans = []
    for start, end in _covered_spans(lengths, min_len):
        i = start + int(np.argmax(lengths[start:end]))
        spans.append({"start": start, "end": end, "length": end - start, "line": text.count(b"\n", 0, start) + 1,
                      "longest_copy": int(lengths[i]), "source": index.locate(int(offsets[i]))})
    report["copied_bytes"] = sum(s["length"] for s in spans)
    report["copied_fraction"] = report["copied_bytes"] / max(len(text), 1)
    report["spans"] = spans
    report["match_lengths"] = lengths
    return report


def summary_line(report: dict) -> str:
    src = report["longest_copy_source"]
    where = f" from {src['file']}:{src['line']}" if src else ""
    return (f"longest copy {report['longest_copy']} bytes{where}; {100 * report['copied_fraction']:.1f}% "
            f"of bytes in copies of >= {report['min_len']} bytes")


def _segments(text: bytes, spans: list[dict]):
    """(bytes, span or None) pieces of the text in order."""
    at = 0
    for s in spans:
        yield text[at : s["start"]], None
        yield text[s["start"] : s["end"]], s
        at = s["end"]
    yield text[at:], None


def highlight(text: bytes, report: dict, color: bool) -> str:
    """The text with copied spans coloured (terminal) or between « » (plain)."""
    out = []
    for piece, span in _segments(text, report["spans"]):
        s = piece.decode("utf-8", errors="replace")
        if span is None:
            out.append(s)
        elif color:  # colour each line separately so a pager or a cut line never bleeds the colour
            out.append("\n".join(f"\x1b[30;43m{line}\x1b[0m" if line else "" for line in s.split("\n")))
        else:
            out.append(f"«{s}»")
    return "".join(out)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


HTML_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>seqlab novelty: {title}</title><style>
body{{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#1d2330;background:#fafbfc}}
h1{{font-size:1.3em}} .facts{{display:flex;gap:2.5em;margin:1em 0}} .facts b{{display:block;font-size:1.6em}}
pre{{white-space:pre-wrap;word-break:break-all;background:#fff;border:1px solid #dde;border-radius:6px;
padding:1em;font:13px/1.6 ui-monospace,monospace}}
mark{{background:hsl(40,95%,{light}%);border-radius:2px;cursor:help}} mark.long{{background:#f7a08c}}
mark:hover{{outline:2px solid #c0392b}} small{{color:#667}}</style></head><body>
<h1>Novelty of <code>{title}</code></h1>
<div class="facts"><div><b>{longest} bytes</b>longest copy{source}</div>
<div><b>{fraction:.1f}%</b>of bytes in copies of &ge; {min_len} bytes</div><div><b>{n_spans}</b>copied spans</div></div>
<small>Highlighted: text that occurs verbatim in the corpus ({corpus_bytes:,} bytes) in runs of at least {min_len}
bytes; red: at least {long} bytes. Hover a span for where it comes from.</small>
<pre>{body}</pre></body></html>"""


def write_html(path, title: str, text: bytes, report: dict) -> None:
    long = 4 * report["min_len"]
    body = []
    for piece, span in _segments(text, report["spans"]):
        s = _esc(piece.decode("utf-8", errors="replace"))
        if span is None:
            body.append(s)
            continue
        src = span["source"]
        tip = (f"{span['length']} copied bytes (text line {span['line']}); longest single copy "
               f"{span['longest_copy']} bytes, from {src['file']}:{src['line']}")
        cls = ' class="long"' if span["longest_copy"] >= long else ""
        body.append(f'<mark{cls} title="{_esc(tip)}">{s}</mark>')
    src = report["longest_copy_source"]
    source = f"<br><small>{_esc(src['file'])}:{src['line']}</small>" if src else ""
    Path(path).write_text(HTML_PAGE.format(
        title=_esc(title), longest=report["longest_copy"], source=source, fraction=100 * report["copied_fraction"],
        min_len=report["min_len"], n_spans=len(report["spans"]), corpus_bytes=report["corpus_bytes"], long=long,
        light=80, body="".join(body)), encoding="utf-8")


def to_json(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "match_lengths"}


def add_cli(sub) -> None:
    p = sub.add_parser("novelty", help="was this text memorised? longest copies from the training corpus")
    p.add_argument("inputs", nargs="+", metavar="[RUN] TEXT_FILE", type=run_or_file,
                   help="a run (its training split is the corpus) and the text; or just the text with --corpus")
    p.add_argument("--corpus", action="append", metavar="PATH", type=corpus_path,
                   help="file, directory or glob to compare against instead of a run's corpus (repeatable)")
    p.add_argument("--min-len", type=integer(min=1), default=20, help="shortest copy that counts as copied (bytes)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--html", metavar="OUT.html", type=output_file, help="write a highlighted HTML view")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(func=cli)


def _index_for(args, run) -> tuple[NoveltyIndex, str]:
    if args.corpus:
        return open_index(args.corpus), f"{' '.join(args.corpus)} (whole files)"
    index = run_index(run)
    fraction = index.manifest["val_fraction"]
    return index, f"training split of run {run} (each file minus its last {fraction:g})"


def cli(args) -> None:
    if len(args.inputs) != (1 if args.corpus else 2):
        raise SeqlabError(f"got {len(args.inputs)} path(s) {' '.join(args.inputs)}; use "
                          "`seqlab novelty RUN TEXT_FILE` or `seqlab novelty --corpus PATH TEXT_FILE`")
    *run, args.text_file = args.inputs
    if run and not is_run(run[0]):
        raise SeqlabError(f"{run[0]} is not a seqlab run; use `seqlab novelty RUN TEXT_FILE` or "
                          "`seqlab novelty --corpus PATH TEXT_FILE`")
    if is_run(args.text_file):
        raise SeqlabError(f"TEXT_FILE {args.text_file} is a seqlab run; give the text to check")
    try:
        text = Path(args.text_file).read_bytes()
    except OSError as e:
        raise SeqlabError(f"cannot read TEXT_FILE {args.text_file}: {e.strerror}") from None
    with quiet(args.json):
        index, corpus_name = _index_for(args, run[0] if run else None)
    report = novelty(index, text, args.min_len)
    if args.html:
        write_html(args.html, args.text_file, text, report)
    if args.json:
        json.dump({**to_json(report), "corpus": corpus_name, "index": str(index.directory)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print(highlight(text, report, color))
    print(f"\ncorpus: {corpus_name}, {index.size:,} bytes; index {'built' if index.built_now else 'reused'}: "
          f"{index.directory}", file=sys.stderr)
    src = report["longest_copy_source"]
    if src:
        print(f"longest copy: {report['longest_copy']} bytes at text byte {report['longest_copy_at']}, "
              f"from {src['file']}:{src['line']} (byte {src['offset']} of that file)")
    else:
        print("longest copy: 0 bytes")
    print(f"copied: {100 * report['copied_fraction']:.1f}% of {len(text):,} bytes in copies of >= "
          f"{args.min_len} bytes ({len(report['spans'])} spans)")
    if args.html:
        print(f"wrote {args.html}")
