"""A nearest-neighbour index of a corpus's passages (FAISS), saved with their metadata and the run's
fingerprint.

    idx = PassageIndex.build(run, files, "idx/", unit="paragraph")   # or PassageIndex.load("idx/")
    idx.add(run, more_files)                                          # appended, nothing rebuilt
    scores, ids = idx.search(query_vectors, k=10)                     # cosine, best first
    idx.passage(ids[0][0])                                             # {"text", "file", "line", ...}

Structure, chosen by size and by the data (bench/vectors_index.py measures both): below EXACT_BELOW passages a
flat index (exact inner product, faster than any partition at that size). From there on an inverted file
(IVF): the vectors are split into about 2 sqrt(n) cells by k-means, and a query reads only the cells nearest to
it. Each vector is stored twice: as a short code the cells are scanned by, and as it is, to re-rank the best
REFINE x k by exact score. Two codings are tried on a sample of the index's own passages asked as queries
(calibrate): 4-bit product codes read by FAISS's SIMD fast scan ("IVF512,PQ64x4fs,RFlat") are kept when they
reach TARGET_RECALL@10 against exact search reading at most twice the cells that 8-bit scalar codes
("IVF512,SQ8,RFlat") need; the neighbourhoods of passage vectors are often too tight for 4-bit codes, and then
the scalar codes are used, or, where near-duplicates are tighter than 8 bits resolve, the exact vectors
themselves ("IVF512,Flat"). The number of
cells read per query (`probes`) is the smallest that reaches TARGET_RECALL on that sample; it is stored in
index.json with the recall it reached (`seqlab search IDX "..." --probes 64` reads more). Adding passages puts
them in their cells (nothing is rebuilt) and calibrates again; a flat index that grows past EXACT_BELOW is
converted once. Loading for search memory-maps the exact vectors (the codes, 1/16 to 1/4 of their size, are
read into memory). The words pooling's vectors are sparse (bag.py): they are kept as they are (structure "Bag",
IDX/vectors.safetensors, read into memory) and searched exactly, their word parts through the index's columns (an
inverted index) and their dense parts by BLAS.

    IDX/index.json           run, fingerprint, unit, pooling, structure, probes, files
    IDX/vectors.faiss        the FAISS index (unit vectors, inner product), or IDX/vectors.safetensors (a bag)
    IDX/passages.jsonl       one metadata row per passage, in id order
    IDX/passages.offsets.npy byte offset of each row in passages.jsonl (random access)
"""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_text
from ..errors import SeqlabError
from ..progress import bar
from . import bag
from .bag import BagVectors
from .embed import CENTRE, DEFAULT_POOLING, embed_stream, fingerprint, is_centred
from .passages import count_passages, passages

FORMAT = 2  # 1: an HNSW graph
EXACT_BELOW = 3_000  # measured: bench/vectors_index.py crossover table (docs/vectors.md)
TARGET_RECALL = 0.96  # recall@10 the stored probes reach on the index's own sample (0.95 is the goal on new queries)
REFINE = 4  # product codes re-rank REFINE x k candidates by the exact vectors
CALIBRATION = 256  # passages asked as queries when the probes are calibrated
PQ_FROM = 1_000  # product codes need this many vectors to train their 16 centroids per part
K = 10
INFO, FAISS_FILE, META, OFFSETS = "index.json", "vectors.faiss", "passages.jsonl", "passages.offsets.npy"
BAG, BAG_FILE = "Bag", "vectors.safetensors"  # the words pooling's sparse vectors, searched exactly


def _faiss():
    import faiss

    return faiss


def cells_for(n: int) -> int:
    """IVF cells for n vectors: a power of two near 2 sqrt(n), with at least 39 vectors to train each."""
    return max(1, min(2 ** round(math.log2(2 * math.sqrt(n))), n // 39))


def probe_ladder(cells: int) -> list[int]:
    steps = sorted({int(b * 2**e) for e in range(20) for b in (1, 1.5)} | {1})
    return [p for p in steps if p < cells] + [cells]


def _exact_store(index):
    """Where the index keeps its vectors exactly: a flat index itself, an IVF's re-ranking store, or an
    IVF,Flat (exact when every cell is read)."""
    return _faiss().downcast_index(index.refine_index) if hasattr(index, "refine_index") else index


def exact_kth(index, queries: np.ndarray, k: int) -> np.ndarray:
    """Each query's exact k-th best score among the index's vectors."""
    store = _exact_store(index)
    if isinstance(store, _faiss().IndexFlat):
        return store.search(queries, k)[0][:, -1]
    ivf = _faiss().extract_index_ivf(store)
    kept, ivf.nprobe = ivf.nprobe, ivf.nlist
    try:
        return store.search(queries, k)[0][:, -1]
    finally:
        ivf.nprobe = kept


def calibrate(index, sample: np.ndarray) -> tuple[int, float]:
    """(the fewest cells to read per query for recall@K >= TARGET_RECALL on `sample`, rows of the index asked as
    queries, and the recall reached there). A row is its own best match: it is asked for K + 1 and the other K
    are scored; any vector scoring at least the exact (K+1)-th counts (a corpus holds duplicate lines)."""
    ivf = _faiss().extract_index_ivf(index)
    kth = exact_kth(index, sample, K + 1)
    recall = 0.0
    for probes in probe_ladder(ivf.nlist):
        ivf.nprobe = probes
        scores, ids = index.search(sample, K + 1)
        hits = ((scores >= kth[:, None] - 1e-5) & (ids >= 0)).sum(1) - 1
        recall = float(np.clip(hits / K, 0, 1).mean())
        if recall >= TARGET_RECALL:
            break
    return probes, recall


def _trained_cells(vectors: np.ndarray, cells: int):
    """A flat index of `cells` spherical k-means centroids of the vectors (a fixed seed: the same vectors give the
    same cells)."""
    faiss = _faiss()
    clustering = faiss.Clustering(vectors.shape[1], cells)
    clustering.seed, clustering.spherical = 1234, True
    clustering.min_points_per_centroid, clustering.max_points_per_centroid = 1, 64
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    clustering.train(vectors, quantizer)
    return quantizer


def _ivf(vectors: np.ndarray, quantizer, codes: str):
    """The vectors in an IVF over `quantizer`'s cells, coded as 4-bit fast-scan product codes ("pq4") or 8-bit
    scalars ("sq8"), the best REFINE x k candidates re-ranked by the exact vectors, or stored exactly ("flat")."""
    faiss = _faiss()
    dim, cells = vectors.shape[1], quantizer.ntotal
    quantizer = faiss.clone_index(quantizer)
    if codes == "flat":
        index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
        index.set_direct_map_type(faiss.DirectMap.Array)  # rows read back to calibrate after an add
    else:
        if codes == "pq4":
            ivf = faiss.IndexIVFPQFastScan(quantizer, dim, cells, dim // 2, 4, faiss.METRIC_INNER_PRODUCT)
        else:
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, cells, faiss.ScalarQuantizer.QT_8bit,
                                                faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexRefineFlat(ivf)
        index.k_factor = REFINE
    index.train(vectors[:: max(1, len(vectors) // (256 * cells))])
    index.add(vectors)
    return index


def calibration_rows(n: int) -> np.ndarray:
    return np.sort(np.random.default_rng(n).choice(n, min(CALIBRATION, n), replace=False))


def new_ivf(vectors: np.ndarray) -> tuple[object, int, float]:
    """(the IVF index of the vectors, its probes, the recall they reach). 4-bit product codes when they reach
    TARGET_RECALL reading at most twice the cells 8-bit scalar codes need (their scan is about 3.5x faster per
    vector, bench/vectors_index.py); else the scalar codes when they reach it; else (neighbourhoods tighter than
    8 bits resolve: near-duplicate passages) the exact vectors."""
    quantizer = _trained_cells(vectors, cells_for(len(vectors)))
    sample = vectors[calibration_rows(len(vectors))]
    index = _ivf(vectors, quantizer, "sq8")
    probes, recall = calibrate(index, sample)
    if recall < TARGET_RECALL:
        index = _ivf(vectors, quantizer, "flat")
        return (index, *calibrate(index, sample))
    if vectors.shape[1] % 2 == 0 and len(vectors) >= PQ_FROM:
        coded = _ivf(vectors, quantizer, "pq4")
        coded_probes, coded_recall = calibrate(coded, sample)
        if coded_recall >= TARGET_RECALL and coded_probes <= 2 * probes:
            return coded, coded_probes, coded_recall
    return index, probes, recall


def recalibrated(index) -> tuple[object, int, float]:
    """(the index, its probes, their recall) after vectors were added to an IVF: calibrated again on a sample of
    all its vectors, and learnt again from all of them (new_ivf) when no number of cells reaches TARGET_RECALL
    (the added vectors lie where the cells and codes were not learnt: an 8-bit code clips values outside the
    ranges it was trained on)."""
    store = _exact_store(index)
    probes, recall = calibrate(index, store.reconstruct_batch(calibration_rows(index.ntotal)))
    if recall >= TARGET_RECALL:
        return index, probes, recall
    return new_ivf(store.reconstruct_n(0, index.ntotal))


def structure_of(index) -> str:
    if isinstance(index, BagVectors):
        return BAG
    faiss = _faiss()
    if isinstance(index, faiss.IndexFlat):
        return "Flat"
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if not hasattr(index, "refine_index"):
        return f"IVF{ivf.nlist},Flat"
    codes = f"PQ{ivf.M}x4fs" if isinstance(ivf, faiss.IndexIVFPQFastScan) else "SQ8"
    return f"IVF{ivf.nlist},{codes},RFlat"


def set_probes(index, probes: int) -> None:
    _faiss().extract_index_ivf(index).nprobe = int(probes)  # (the re-ranking's k_factor is saved with the index)


def _read_vectors(path: Path, info: dict, mmap: bool):
    """The index's vectors: a bag's read into memory, a FAISS index's exact vectors mapped where mmap is asked
    (an IVF,Flat's cells (_MMAP), else the flat vectors (_IFC))."""
    if info.get("structure") == BAG:
        from safetensors.numpy import load_file

        return BagVectors.from_arrays(load_file(str(path / BAG_FILE)))
    faiss = _faiss()
    flags = 0
    if mmap:
        flags = faiss.IO_FLAG_MMAP if info.get("structure", "").endswith(",Flat") else faiss.IO_FLAG_MMAP_IFC
    return faiss.read_index(str(path / FAISS_FILE), flags)


def _threads(n: int) -> None:
    _faiss().omp_set_num_threads(n)


class PassageIndex:
    def __init__(self, path: Path, info: dict, faiss_index, offsets: np.ndarray):
        self.path, self.info, self.index, self.offsets = Path(path), info, faiss_index, offsets
        self._meta = None
        self.owned = True  # False when memory-mapped: FAISS cannot add to a mapped index

    def __len__(self) -> int:
        if isinstance(self.index, BagVectors):
            return len(self.index)
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
        if not self.owned and self.structure != BAG:
            self.index = _faiss().read_index(str(self.path / FAISS_FILE))  # writable, in memory
            self.owned = True
        self.offsets = np.array(self.offsets)
        self._append(run, files, show_progress)
        self._save(self.path)
        return len(self) - before

    def _append(self, run, files, show_progress: bool) -> None:
        unit, pooling = self.info["unit"], self.info["pooling"]
        n_new = count_passages(files, unit)
        offsets, at = [self.offsets], (self.path / META).stat().st_size
        threads = max(1, len(os.sched_getaffinity(0)))
        _threads(threads)
        per_file, bags = {}, [self.index] if isinstance(self.index, BagVectors) else []
        with open(self.path / META, "ab") as meta, \
                bar(total=n_new, desc="index", unit="passage", enabled=None if show_progress else False) as b:
            for chunk, vectors in embed_stream(run, passages(files, unit), pooling, centre=self.info["centre"]):
                if isinstance(vectors, BagVectors):
                    bags.append(vectors)  # put together once at the end: joining at each chunk copied all before it
                else:
                    if self.index is None:  # flat until it is complete: the cells are learnt from every vector
                        self.index = _faiss().IndexFlatIP(vectors.shape[1])
                    self.index.add(vectors)
                rows = [json.dumps(p.meta(), ensure_ascii=False).encode() + b"\n" for p in chunk]
                lengths = np.array([len(r) for r in rows], np.int64)
                offsets.append(at + np.concatenate([[0], np.cumsum(lengths)[:-1]]))
                at += int(lengths.sum())
                meta.write(b"".join(rows))
                for p in chunk:
                    per_file[p.file] = per_file.get(p.file, 0) + 1
                b.update(len(chunk))
        if bags:
            self.index = BagVectors.concat(bags)
        if self.index is None:
            raise SeqlabError(f"no {unit} passages in the files given (all empty or blank)")
        if self.structure == "Flat" and len(self) >= self.info["exact_below"]:
            vectors, self.index = self.index.reconstruct_n(0, self.index.ntotal), None
            self.index, probes, recall = new_ivf(vectors)
            learnt_on = len(self)
        elif not self.exact:
            kept = self.index
            self.index, probes, recall = recalibrated(self.index)
            learnt_on = self.info["learnt_on"] if self.index is kept else len(self)
        _threads(1)
        self.offsets = np.concatenate(offsets).astype(np.int64)
        self.info["files"] += [{"path": str(Path(f).resolve()), "bytes": Path(f).stat().st_size,
                                "passages": per_file.get(str(f), 0)} for f in files]
        self.info.update(count=len(self), structure=self.structure, **self._library())
        if not self.exact:
            set_probes(self.index, probes)
            self.info.update(probes=probes, calibrated_recall=round(recall, 4), learnt_on=learnt_on)

    @property
    def structure(self) -> str:
        return structure_of(self.index)

    @property
    def exact(self) -> bool:
        """Searched exactly (a flat index or a bag): no cells, no probes."""
        return self.structure in ("Flat", BAG)

    def _library(self) -> dict:
        if self.structure == BAG:
            import scipy

            return {"dim": self.index.dim, "library": f"scipy {scipy.__version__} (sparse, exact)"}
        return {"dim": int(self.index.d), "library": f"faiss {_faiss().__version__}"}

    def _save(self, where: Path) -> None:
        if self.structure == BAG:
            tmp = where / f".{BAG_FILE}.tmp{os.getpid()}"
            bag.save(self.index, tmp)
            os.replace(tmp, where / BAG_FILE)
        else:
            tmp = where / f".{FAISS_FILE}.tmp{os.getpid()}"
            _faiss().write_index(self.index, str(tmp))
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
        try:
            index = _read_vectors(path, info, mmap)
            offsets = np.load(path / OFFSETS, mmap_mode="r")
        except (RuntimeError, OSError, ValueError, KeyError) as e:
            raise SeqlabError(f"cannot read the index in {path}: {str(e).splitlines()[0]}") from None
        out = cls(path, info, index, offsets)
        if not (len(out) == len(offsets) == info.get("count")):
            raise SeqlabError(f"{path} is inconsistent ({len(out)} vectors, {len(offsets)} passages, "
                              f"{info.get('count')} in {INFO}): an add was interrupted; rebuild the index")
        if not out.exact:
            set_probes(index, info["probes"])
        out.owned = not mmap or info["structure"] == BAG
        return out

    def check_run(self, run) -> None:
        """Refuse a run (a Run or its directory) whose weights are not those the index was built with."""
        run_dir = getattr(run, "path", run)
        if fingerprint(run_dir) != self.info["fingerprint"]:
            raise SeqlabError(f"{self.path} was built from another run ({self.info['run']}, fingerprint "
                              f"{self.info['fingerprint'][:12]}); {run_dir} has other weights: use that run, or "
                              f"rebuild the index with `seqlab index {run_dir} FILES --out NEW`")

    @property
    def probes(self) -> int | None:
        """The IVF cells a query reads: those stored with the index unless read_cells changed them."""
        return None if self.exact else int(_faiss().extract_index_ivf(self.index).nprobe)

    def read_cells(self, probes: int | None) -> None:
        """Read more cells per query (more recall, slower) or fewer than stored; None keeps them. No effect on an
        exact (flat or bag) index."""
        if probes is not None and not self.exact:
            set_probes(self.index, probes)

    def search(self, queries, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores (Q, k'), ids (Q, k')) for unit query vectors (BagVectors for a bag), best first;
        k' = min(k, len(self))."""
        k = min(k, len(self))
        if self.structure == BAG:
            return queries.top(self.index, k)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

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
