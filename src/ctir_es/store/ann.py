"""Approximate vector indexes persisted beside the embedded store (``<store>.ann/``), opened
memory-mapped, so a new process pays milliseconds instead of rebuilding (35 s for HNSW at 100k).

Every option searches 8-bit codes: ``sq8`` scans all codes, ``ivf`` scans the ``nprobe`` nearest
of ~2 sqrt(n) inverted lists of codes, ``hnsw`` walks a graph over codes. The candidates are
rescored exactly from a float32 copy of the rows (``vectors.npy``, in index order; memory-mapped
when small, its candidate rows read with ``pread`` when large) and named from a memory-mapped id
array (``ids.npy``), so a query touches no SQL, memory holds the codes (a quarter of the float32
matrix) and not a large copy, and the results carry exact scores. (Rescoring from SQLite instead
cost ~2 ms per query for 400 candidates: a B-tree lookup each.) The price is disk: the copy is as
large as the raw vectors.

Staleness rule. An index directory is named by field, kind and the ``vectors_generation`` (meta
table, bumped by every committed write of products or vectors) it was built from, and records
the position of the store's ``vector_log`` it has applied and the highest product rowid at its
build (``meta.json``). It is written to a temporary directory first, then renamed into place
(atomic), so a reader sees a whole index or none; a newer one replaces older ones of the same
field and kind. What changed since is not in the index: ``embedded/approximate.py`` masks those
rows out of its answers and scores their current vectors exactly, and rebuilds it in the
background when they grow past a bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import mmap
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingExtraError

KINDS = ("sq8", "ivf", "hnsw")
GENERATION_KEY = "vectors_generation"
IVF_PROBE_SHARE = 0.05  # lists scanned per query: 5% of them (at least IVF_MIN_PROBE); recall@10
IVF_MIN_PROBE = 16      # on MiniLM title vectors at 100k was 0.944 with 16 of 632 lists (2.5%)
IVF_MAX_LISTS = 4096
IVF_TRAIN_PER_LIST = 40  # k-means sample: 40 vectors per list (faiss warns below 39)
# efConstruction 120, not 40: on 1M clustered vectors (benchmarks/shop.py's synthetic catalogue)
# a graph built with 40 reached recall@10 0.877 whatever efSearch (0.94 at 1024) or rescoring
# depth; built with 120 it reaches 0.987-1.000 at efSearch 128, filtered or not. Building costs
# ~3x (100k: 35 s against 11 s); an index built before keeps its graph until rebuilt.
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 120, 128
# Rescoring reads candidate rows from the memory-mapped float32 copy up to this size (100k x 512
# is 195 MiB: hnsw kNN 0.39 ms) and with pread above it (RowFile: 0.89 ms at 100k, but the
# copy never counts in the process's memory; mapped, a 1M x 512 store's 2 GiB copy did).
MAPPED_MAX_BYTES = 256 * 2**20
_FILE = "index.faiss"
_ROWIDS = "rowids.npy"
_VECTORS = "vectors.npy"
_IDS = "ids.npy"
_META = "meta.json"
_BUILDING = ".build-"
_REBUILD_LOCK = ".rebuild.lock"


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise MissingExtraError(
            "approximate vector indexes need faiss: pip install 'ctir-es[ann]' (or faiss-cpu)"
        ) from exc
    return faiss


def ann_dir(store_path: Path) -> Path:
    """Where the approximate indexes of ``store_path`` live (one store path for the user)."""
    return store_path.with_name(store_path.name + ".ann")


def _safe(field: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", field)


def index_name(field: str, kind: str, generation: int) -> str:
    return f"{_safe(field)}.{kind}.g{generation}"


def build(kind: str, matrix: np.ndarray) -> Any:
    """A faiss index of 8-bit codes over the unit rows of ``matrix`` (inner product = cosine)."""
    faiss = faiss_module()
    n, dims = matrix.shape
    data = np.ascontiguousarray(matrix, dtype=np.float32)
    qt, ip = faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    if kind == "sq8":
        index = faiss.IndexScalarQuantizer(dims, qt, ip)
        index.train(data)
    elif kind == "ivf":
        nlist = max(1, min(int(2 * np.sqrt(n)), IVF_MAX_LISTS, n // IVF_TRAIN_PER_LIST))
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dims), dims, nlist, qt, ip)
        sample_n = IVF_TRAIN_PER_LIST * nlist
        sample = data if n <= sample_n else data[np.sort(np.random.default_rng(0).choice(n, sample_n, replace=False))]
        index.train(sample)
    elif kind == "hnsw":
        index = faiss.IndexHNSWSQ(dims, qt, HNSW_M, ip)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.train(data)
    else:
        raise ValueError(f"unknown approximate index kind {kind!r}; supported: {', '.join(KINDS)}")
    index.add(data)
    tune(kind, index)
    return index


def tune(kind: str, index: Any) -> None:
    """Search-time parameters (not all are saved with the index)."""
    if kind == "ivf":
        index.nprobe = min(index.nlist, max(IVF_MIN_PROBE, round(index.nlist * IVF_PROBE_SHARE)))
    elif kind == "hnsw":
        index.hnsw.efSearch = HNSW_EF_SEARCH


@dataclass
class AnnIndex:
    """One field's index: faiss position i is the product ``ids[i]`` (SQLite rowid ``rowids[i]``)
    whose float32 vector is ``vectors[i]``."""

    kind: str
    field: str
    generation: int
    index: Any
    rowids: np.ndarray
    dims: int
    vectors: np.ndarray | RowFile  # in memory (an index built on read-only media) or on disk
    ids: np.ndarray  # fixed-width UTF-8 bytes
    masks: dict[tuple[Any, ...], np.ndarray] = dataclasses.field(default_factory=dict)  # filter -> positions passing it
    log: int | None = None  # the vector_log position applied (None: built before the log existed)
    max_rowid: int | None = None  # the highest product rowid of the store at the build
    store: str = ""  # the store's uuid

    def search(self, query: np.ndarray, k: int, fetch: int, mask: np.ndarray | None = None,
               dead: np.ndarray | None = None) -> tuple[list[str], list[float]]:
        """The ``k`` best products (ids, exact cosines), best first, among ``fetch`` candidates;
        ``mask`` (a bool per position): only those positions (faiss's ID selector, searched
        inside the index, so the candidates are all allowed ones); ``dead`` (a bool per position):
        positions left out of the answer (rows changed since the build)."""
        faiss = faiss_module()
        params = None
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")
            params = (faiss.SearchParametersHNSW() if self.kind == "hnsw"
                      else faiss.SearchParametersIVF() if self.kind == "ivf" else faiss.SearchParameters())
            params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            if self.kind == "hnsw":  # the parameters replace the index's own: keep them
                params.efSearch = HNSW_EF_SEARCH
            elif self.kind == "ivf":
                params.nprobe = self.index.nprobe
        # One query is searched on one thread: OpenMP's hand-off and spin-waiting cost more than
        # they save at this size (44 ms instead of 0.2 ms for sq8 at 2k on a busy 2-core box).
        # The setting is per calling thread; builds keep every core.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            _, found = self.index.search(query.reshape(1, -1), min(max(fetch, k), len(self.rowids)), params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        pos = np.sort(found[0][found[0] >= 0])
        if dead is not None:
            pos = pos[~dead[pos]]
        return self.rescore(query, k, pos)  # ascending: the file is read forwards

    def rescore(self, query: np.ndarray, k: int, pos: np.ndarray) -> tuple[list[str], list[float]]:
        """The ``k`` best of the positions ``pos`` (ascending) by exact cosine, best first."""
        if not len(pos):
            return [], []
        scores = (self.vectors.take(pos) if isinstance(self.vectors, RowFile) else self.vectors[pos]) @ query
        n = min(k, len(pos))
        top = np.argpartition(-scores, n - 1)[:n] if 0 < n < len(pos) else np.arange(len(pos))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [b.decode() for b in self.ids[pos[top]].tolist()], scores[top].tolist()


def save(root: Path, field: str, kind: str, generation: int, store_uuid: str, index: Any,
         rowids: np.ndarray, vectors: np.ndarray, ids: np.ndarray, log: int | None = None,
         max_rowid: int | None = None) -> Path | None:
    """Write the index into ``root`` atomically; None when ``root`` is not writable (read-only
    media: the index then lives in memory only). Older generations of the same field and kind
    are removed (processes that mapped them keep their pages until they let go)."""
    faiss = faiss_module()
    final = root / index_name(field, kind, generation)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_BUILDING, dir=root))
    except OSError:
        return None
    try:
        faiss.write_index(index, str(tmp / _FILE))
        np.save(tmp / _ROWIDS, np.ascontiguousarray(rowids, dtype=np.int64))
        np.save(tmp / _VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
        np.save(tmp / _IDS, ids)
        meta = {"field": field, "kind": kind, "generation": generation, "store": store_uuid,
                "count": len(rowids), "dims": int(index.d), "log": log, "max_rowid": max_rowid}
        (tmp / _META).write_text(json.dumps(meta))
        for name in (_FILE, _ROWIDS, _VECTORS, _IDS, _META):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists() and load(root, field, kind, generation, store_uuid) is None:
            shutil.rmtree(final, ignore_errors=True)  # a damaged or foreign one: replace it
        try:
            os.rename(tmp, final)
        except OSError:  # another process saved the same generation first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    newest = generations(root, field, kind)
    prune(root, field, kind, keep=newest[0] if newest else generation)  # a slower, older build never wins
    return final


def prune(root: Path, field: str, kind: str, keep: int) -> None:
    prefix = f"{_safe(field)}.{kind}.g"
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            if entry.name.startswith(prefix) and entry.name != index_name(field, kind, keep):
                shutil.rmtree(entry, ignore_errors=True)


def generations(root: Path, field: str, kind: str) -> list[int]:
    """The generations saved for ``field`` and ``kind``, newest first."""
    prefix = f"{_safe(field)}.{kind}.g"
    try:
        names = [e.name[len(prefix):] for e in root.iterdir() if e.name.startswith(prefix)]
    except OSError:
        return []
    return sorted((int(n) for n in names if n.isdigit()), reverse=True)


def load_newest(root: Path, field: str, kind: str, store_uuid: str) -> AnnIndex | None:
    """The newest saved index of ``field`` and ``kind`` that loads (any generation)."""
    for generation in generations(root, field, kind):
        found = load(root, field, kind, generation, store_uuid)
        if found is not None:
            return found
    return None


def applied_positions(root: Path) -> list[int | None]:
    """The vector_log position of every saved index beside the store (None: it has none)."""
    out: list[int | None] = []
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            if entry.name.startswith("."):
                continue
            try:
                value = json.loads((entry / _META).read_text()).get("log")
            except (OSError, ValueError):
                continue
            out.append(int(value) if isinstance(value, int) else None)
    return out


@contextlib.contextmanager
def rebuild_lock(root: Path, create: bool = True) -> Iterator[bool]:
    """One rebuild at a time across processes (an ``flock``, released by the kernel when its
    holder dies): yields False when another holds it. The holder removes unfinished build
    directories first (left by a builder killed mid-way; none can be running)."""
    try:
        if create:
            root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / _REBUILD_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        with contextlib.suppress(OSError):
            for entry in root.iterdir():
                if entry.name.startswith(_BUILDING):
                    shutil.rmtree(entry, ignore_errors=True)
        yield True
    finally:
        os.close(fd)


def kinds_present(root: Path, field: str) -> set[str]:
    """Kinds that have been built for ``field`` (any generation): the writer keeps them current."""
    prefix = f"{_safe(field)}."
    try:
        names = [e.name for e in root.iterdir() if e.name.startswith(prefix)]
    except OSError:
        return set()
    return {name[len(prefix):].split(".")[0] for name in names} & set(KINDS)


def load(root: Path, field: str, kind: str, generation: int, store_uuid: str) -> AnnIndex | None:
    """The persisted index of ``field`` built at ``generation``, memory-mapped; None when there
    is none or it belongs to another store (a store re-created at the same path)."""
    faiss = faiss_module()
    where = root / index_name(field, kind, generation)
    try:
        meta = json.loads((where / _META).read_text())
        if meta.get("store") != store_uuid or meta.get("field") != field:
            return None
        # IVF maps its inverted lists; flat codes (sq8, the storage of hnsw) need the IFC flag
        flag = faiss.IO_FLAG_MMAP if kind == "ivf" else faiss.IO_FLAG_MMAP_IFC
        index = faiss.read_index(str(where / _FILE), flag | faiss.IO_FLAG_READ_ONLY)
        rowids = np.load(where / _ROWIDS, mmap_mode="r")
        mapped = np.load(where / _VECTORS, mmap_mode="r")  # small: rescored from; large: its offset and shape
        ids = np.load(where / _IDS, mmap_mode="r")
        vectors = (RowFile.open(where / _VECTORS, mapped) if mapped.nbytes > MAPPED_MAX_BYTES and hasattr(os, "preadv")
                   else _no_readahead(mapped))
    except (OSError, ValueError, RuntimeError):
        return None  # absent, partly deleted by a newer writer, or damaged: rebuilt by the caller
    if not len(rowids) == len(ids) == mapped.shape[0] == index.ntotal or mapped.shape[1] != index.d:
        return None
    tune(kind, index)
    log, top = meta.get("log"), meta.get("max_rowid")
    return AnnIndex(kind, field, generation, index, rowids, int(index.d), vectors, ids,
                    log=int(log) if isinstance(log, int) else None, max_rowid=int(top) if isinstance(top, int) else None,
                    store=store_uuid)


def _no_readahead(array: np.ndarray) -> np.ndarray:
    """A small copy is rescored from the memory map: no read-ahead around the scattered rows."""
    mapped = getattr(array, "_mmap", None)
    if mapped is not None and hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        with contextlib.suppress(OSError):
            mapped.madvise(mmap.MADV_RANDOM)
    return array


class RowFile:
    """Rows of a float32 ``.npy`` matrix read with ``pread`` into a fresh buffer.

    Why not index the memory map: rescoring reads ~400 scattered rows per query, and a mapped
    read maps the page-cache folio around each row. On kernels with large folios (6.x) 400 rows
    of a 1M x 512 copy made 656 MiB resident, and a few hundred queries all of its 2 GiB: the
    memory a quantised index exists to save. Read this way, the rows go through the page cache
    only (shared and reclaimable, not the process's memory), at ~0.2-0.5 ms more per 400 rows
    (a system call each), which is why copies up to MAPPED_MAX_BYTES are still memory-mapped.
    """

    def __init__(self, fd: int, offset: int, rows: int, dims: int) -> None:
        self.fd, self.offset, self.shape = fd, offset, (rows, dims)
        self.row_bytes = dims * 4
        weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, path: Path, mapped: np.ndarray) -> RowFile:
        """``mapped``: the same file from ``np.load(mmap_mode="r")`` (its data offset and shape)."""
        if mapped.dtype != np.float32 or mapped.ndim != 2 or not mapped.flags.c_contiguous:
            raise ValueError(f"{path}: not a C-ordered float32 matrix")
        return cls(os.open(path, os.O_RDONLY), int(getattr(mapped, "offset", 0)), *mapped.shape)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions`` (ascending reads the file forwards), as a float32 matrix."""
        out = np.empty((len(positions), self.shape[1]), dtype=np.float32)
        buffer, size = out.data.cast("B"), self.row_bytes
        for j, row in enumerate(positions.tolist()):
            if os.preadv(self.fd, [buffer[j * size:(j + 1) * size]], self.offset + row * size) != size:
                raise OSError(f"short read of row {row} of the approximate index's vectors")
        return out


def encode_ids(ids: np.ndarray) -> np.ndarray:
    """Product ids as a fixed-width UTF-8 byte array (memory-mappable, unlike Python strings)."""
    return np.asarray([str(i).encode() for i in ids.tolist()], dtype=np.bytes_)
