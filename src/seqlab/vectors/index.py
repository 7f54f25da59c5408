"""A nearest-neighbour index of a corpus's passages (FAISS), saved with their metadata and the run's
fingerprint.

    idx = PassageIndex.build(run, files, "idx/", unit="paragraph")   # or PassageIndex.load("idx/")
    idx.add(run, more_files)                                          # appended, nothing rebuilt
    scores, ids = idx.search(query_vectors, k=10)                     # cosine, best first
    idx.passage(ids[0][0])                                             # {"text", "file", "line", ...}

Structure, chosen by size (bench/vectors_index.py measures the crossover): below EXACT_BELOW passages a
flat index (exact inner product, faster than a graph at that size); from there on FAISS's HNSW graph
("HNSW16,Flat", efConstruction 80), searched with efSearch = EF_SEARCH (stored in index.json; `search --ef`
overrides it): the fastest setting of bench/vectors_sweep.py with recall@10 >= 0.95 against exact search on
both synthetic and real passage vectors. Adding passages to an HNSW index inserts them into the graph; a flat
index that grows past EXACT_BELOW is converted once. Loading for search memory-maps the FAISS file
(IO_FLAG_MMAP_IFC).

    IDX/index.json           run, fingerprint, unit, pooling, structure, files
    IDX/vectors.faiss        the FAISS index (unit vectors, inner product)
    IDX/passages.jsonl       one metadata row per passage, in id order
    IDX/passages.offsets.npy byte offset of each row in passages.jsonl (random access)
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_text
from ..errors import SeqlabError
from ..progress import bar
from .embed import CENTRE, DEFAULT_POOLING, embed_stream, fingerprint, is_centred
from .passages import count_passages, passages

FORMAT = 1
EXACT_BELOW = 3_000  # measured: bench/vectors_index.py crossover table (docs/vectors.md)
HNSW = "HNSW16,Flat"
EF_CONSTRUCTION = 80
EF_SEARCH = 32
INFO, FAISS_FILE, META, OFFSETS = "index.json", "vectors.faiss", "passages.jsonl", "passages.offsets.npy"


def _faiss():
    import faiss

    return faiss


def structure_for(n: int, exact_below: int) -> str:
    return "Flat" if n < exact_below else HNSW


def new_faiss_index(dim: int, structure: str):
    faiss = _faiss()
    index = faiss.index_factory(dim, structure, faiss.METRIC_INNER_PRODUCT)
    if structure.startswith("HNSW"):
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.hnsw.efSearch = EF_SEARCH
    return index


def _threads(n: int) -> None:
    _faiss().omp_set_num_threads(n)


class PassageIndex:
    def __init__(self, path: Path, info: dict, faiss_index, offsets: np.ndarray):
        self.path, self.info, self.index, self.offsets = Path(path), info, faiss_index, offsets
        self._meta = None
        self.owned = True  # False when memory-mapped: FAISS cannot add to a mapped index

    def __len__(self) -> int:
        return int(self.index.ntotal) if self.index is not None else 0

    # ---- build, add ----
    @classmethod
    def build(cls, run, files, out, unit: str = "paragraph", pooling: str = DEFAULT_POOLING,
              exact_below: int = EXACT_BELOW, show_progress: bool = True) -> "PassageIndex":
        out = Path(out)
        info = {"format": FORMAT, "run": str(Path(run.path).resolve()), "fingerprint": fingerprint(run.path),
                "unit": unit, "pooling": pooling, "centre": CENTRE and is_centred(pooling), "exact_below": exact_below,
                "files": []}
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / META).write_bytes(b"")
        index = cls(tmp, info, None, np.zeros(0, np.int64))
        try:
            index._append(run, files, show_progress)
            index._save(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing half-built is left behind
            raise
        if out.exists():
            out.rmdir()  # checked empty before the work
        os.replace(tmp, out)
        index.path = out
        return index

    def add(self, run, files, show_progress: bool = True) -> int:
        """Append the passages of new files; returns how many were added."""
        self.check_run(run)
        known = {f["path"] for f in self.info["files"]}
        again = [str(f) for f in files if str(Path(f).resolve()) in known]
        if again:
            raise SeqlabError(f"{again[0]} is already in {self.path}; an index adds new files only (build a new "
                              f"index to take in changed files)")
        before = len(self)
        if not self.owned:
            self.index = _faiss().read_index(str(self.path / FAISS_FILE))  # writable, in memory
            self.owned = True
        self.offsets = np.array(self.offsets)
        self._append(run, files, show_progress)
        self._save(self.path)
        return len(self) - before

    def _append(self, run, files, show_progress: bool) -> None:
        unit, pooling = self.info["unit"], self.info["pooling"]
        n_new = count_passages(files, unit)
        total = len(self) + n_new
        offsets, at = [self.offsets], (self.path / META).stat().st_size
        threads = max(1, len(os.sched_getaffinity(0)))
        _threads(threads)
        per_file = {}
        with open(self.path / META, "ab") as meta, \
                bar(total=n_new, desc="index", unit="passage", enabled=None if show_progress else False) as b:
            for chunk, vectors in embed_stream(run, passages(files, unit), pooling, centre=self.info["centre"]):
                if self.index is None:
                    self.index = new_faiss_index(vectors.shape[1], structure_for(total, self.info["exact_below"]))
                elif total >= self.info["exact_below"] and self._structure() == "Flat":
                    self._to_graph()
                self.index.add(vectors)
                rows = [json.dumps(p.meta(), ensure_ascii=False).encode() + b"\n" for p in chunk]
                lengths = np.array([len(r) for r in rows], np.int64)
                offsets.append(at + np.concatenate([[0], np.cumsum(lengths)[:-1]]))
                at += int(lengths.sum())
                meta.write(b"".join(rows))
                for p in chunk:
                    per_file[p.file] = per_file.get(p.file, 0) + 1
                b.update(len(chunk))
        if self.index is None:
            raise SeqlabError(f"no {unit} passages in the files given (all empty or blank)")
        _threads(1)
        self.offsets = np.concatenate(offsets).astype(np.int64)
        self.info["files"] += [{"path": str(Path(f).resolve()), "bytes": Path(f).stat().st_size,
                                "passages": per_file.get(str(f), 0)} for f in files]
        self.info.update(count=len(self), dim=int(self.index.d), structure=self._structure(),
                         ef_search=EF_SEARCH if self._structure() != "Flat" else None,
                         library=f"faiss {_faiss().__version__}")

    def _structure(self) -> str:
        return HNSW if hasattr(self.index, "hnsw") else "Flat"

    def _to_graph(self) -> None:
        vectors = self.index.reconstruct_n(0, self.index.ntotal)
        self.index = new_faiss_index(self.index.d, HNSW)
        self.index.add(vectors)

    def _save(self, where: Path) -> None:
        faiss = _faiss()
        tmp = where / f".{FAISS_FILE}.tmp{os.getpid()}"
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, where / FAISS_FILE)
        np.save(where / f".offsets.tmp{os.getpid()}.npy", self.offsets)
        os.replace(where / f".offsets.tmp{os.getpid()}.npy", where / OFFSETS)
        atomic_write_text(where / INFO, json.dumps(self.info, indent=2) + "\n")  # last: it vouches for the rest
        self._meta = None

    # ---- load, search ----
    @classmethod
    def load(cls, path, mmap: bool = True) -> "PassageIndex":
        path = Path(path)
        if not (path / INFO).exists():
            raise SeqlabError(f"{path} is not a seqlab index (no {INFO}); build one with `seqlab index RUN FILES "
                              f"--out {path}`")
        try:
            info = json.loads((path / INFO).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SeqlabError(f"cannot read {path / INFO}: {e}") from None
        if info.get("format") != FORMAT:
            raise SeqlabError(f"{path} is index format {info.get('format')!r}; this seqlab reads {FORMAT}: rebuild it")
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
        try:
            index = faiss.read_index(str(path / FAISS_FILE), flags)
            offsets = np.load(path / OFFSETS, mmap_mode="r")
        except (RuntimeError, OSError, ValueError) as e:
            raise SeqlabError(f"cannot read the index in {path}: {str(e).splitlines()[0]}") from None
        if not (index.ntotal == len(offsets) == info.get("count")):
            raise SeqlabError(f"{path} is inconsistent ({index.ntotal} vectors, {len(offsets)} passages, "
                              f"{info.get('count')} in {INFO}): an add was interrupted; rebuild the index")
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = info.get("ef_search") or EF_SEARCH
        out = cls(path, info, index, offsets)
        out.owned = not mmap
        return out

    def check_run(self, run) -> None:
        """Refuse a run (a Run or its directory) whose weights are not those the index was built with."""
        run_dir = getattr(run, "path", run)
        if fingerprint(run_dir) != self.info["fingerprint"]:
            raise SeqlabError(f"{self.path} was built from another run ({self.info['run']}, fingerprint "
                              f"{self.info['fingerprint'][:12]}); {run_dir} has other weights: use that run, or "
                              f"rebuild the index with `seqlab index {run_dir} FILES --out NEW`")

    @property
    def ef_search(self) -> int | None:
        """The graph's search breadth (efSearch): the one stored with the index unless set_ef changed it."""
        return int(self.index.hnsw.efSearch) if hasattr(self.index, "hnsw") else None

    def set_ef(self, ef: int | None) -> None:
        """Search wider (more recall, slower) or narrower than the stored efSearch; None keeps it. No effect on
        an exact (flat) index."""
        if ef is not None and hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = int(ef)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores (Q, k'), ids (Q, k')) for unit query vectors, best first; k' = min(k, len(self))."""
        k = min(k, len(self))
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids

    def passage(self, i: int) -> dict:
        if self._meta is None:
            self._meta = open(self.path / META, "rb")
        self._meta.seek(int(self.offsets[i]))
        return json.loads(self._meta.readline())

    def search_text(self, run, query: str, k: int = 10) -> list[dict]:
        from .embed import embed_texts

        data = query.encode("utf-8", errors="replace")
        if not data.strip():
            raise SeqlabError("the query is empty; give some text to search for")
        vector = embed_texts(run, [data], self.info["pooling"], centre=self.info["centre"])
        scores, ids = self.search(vector, k)
        return [{**self.passage(int(i)), "score": float(s)} for s, i in zip(scores[0], ids[0]) if i >= 0]
