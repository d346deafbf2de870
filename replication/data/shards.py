"""HDF5 shard sets: an LMDB-like store of encoded images with labels beside the pixels (docs/datasets.md#shard-sets).

A shard set is a folder holding ``manifest.json`` and HDF5 files ``part-00000.h5 …`` with a
fixed number of records each. Per shard, one row per record:

* ``images``  variable-length uint8 — the encoded image bytes (JPEG q95 or PNG)
* ``labels``  float32 N×C — multi-hot (WIDER keeps −1/0/1); all-NaN rows for unlabeled sets
* ``keys``    UTF-8 strings — the source id (file name, annotation id, sample index)
* ``source``  uint8 — 0 real, 1 generated

Writes are atomic: a set is written into a sibling temporary folder, its manifest (with per-shard
record counts and SHA-256) last, and the folder is moved to its name only then; an existing folder
is replaced only when it holds nothing but a shard set's own files, never user files. A folder
without a manifest is never mistaken for a complete shard set.

Reads are verified: the first time a process tree opens a shard, its SHA-256 is checked against the
manifest and its row counts against the manifest's count; a mismatch is a one-line
:class:`ShardError` naming the shard (``spl data verify`` checks every shard at once).

Reading is lazy: HDF5 handles are opened on first access *in the process that reads*, so a
:class:`ShardSet` created before ``DataLoader`` forks its workers is safe to use in them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

from replication.errors import ShardError, StorageError, os_reason
from replication.io_utils import atomic_write_bytes, atomic_write_text, hdf5_bytes
from replication.locking import output_lock

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SOURCE_REAL = 0
SOURCE_GENERATED = 1
LABEL_KINDS = ("binary", "wider", "none")
ENCODINGS = ("jpeg", "png")


BUILD_PREFIX = ".{name}.building-"  # + pid: the sibling folder a set is written into
BUILD_MARKER = ".spl-building"      # created first inside a build folder, removed before the swap
OLD_PREFIX = ".{name}.old-"         # + pid: the replaced set, removed right after the swap
_OWN_FILE = re.compile(r"(part-\d{5}\.h5(\.tmp)?|\.part-\d{5}\.h5\..*\.tmp|manifest\.json|\.manifest\.json\..*\.tmp"
                       r"|\.spl-building)")


def foreign_files(folder: Path) -> list[str]:
    """Names in ``folder`` that a shard-set writer does not create (sorted)."""
    return sorted(p.name for p in folder.iterdir() if not (_OWN_FILE.fullmatch(p.name) and not p.is_symlink()
                                                             and p.is_file()))


def check_replaceable(out: Path, *, overwrite: bool) -> None:
    """Raise :class:`ShardError` unless ``out`` is absent or a folder that a new shard set may replace."""
    if out.is_symlink():
        raise ShardError(f"{out}: is a symbolic link; give a real folder for the shard set")
    if not out.exists():
        return
    if not out.is_dir():
        raise ShardError(f"{out}: exists and is not a folder; refusing to replace it")
    foreign = foreign_files(out)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise ShardError(f"{out}: holds files that are not part of a shard set ({', '.join(foreign[:3])}{more}); "
                         "refusing to replace it, choose an empty or new folder")
    if (out / MANIFEST).exists() and not overwrite:
        raise ShardError(f"{out}: a complete shard set already exists (use overwrite to rebuild)")
    if any(out.iterdir()) and not (out / MANIFEST).is_file() and not (out / BUILD_MARKER).is_file():
        raise ShardError(f"{out}: holds shard files but neither a manifest nor a build marker, so they are not "
                         "known to be ours; remove them yourself or choose another folder")


def remove_stale_builds(out: Path) -> None:
    """Remove build/old sibling folders of ``out`` left by dead writers (the caller holds ``out``'s lock)."""
    if not out.parent.is_dir():
        return
    for prefix in (BUILD_PREFIX, OLD_PREFIX):
        head = prefix.format(name=out.name)
        for p in out.parent.iterdir():
            if p.name.startswith(head) and p.name[len(head):].isdigit() and p.is_dir() and not p.is_symlink() \
                    and not foreign_files(p) and ((p / BUILD_MARKER).is_file() or (p / MANIFEST).is_file()):
                shutil.rmtree(p, ignore_errors=True)


def replace_dir(new: Path, out: Path) -> None:
    """Move the finished folder ``new`` to ``out``; a previous ``out`` is moved aside first, then removed."""
    old = None
    if out.exists():
        old = out.parent / f"{OLD_PREFIX.format(name=out.name)}{os.getpid()}"
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def shard_name(index: int) -> str:
    """File name of shard ``index`` inside a shard set."""
    return f"part-{index:05d}.h5"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def encode_image(image_bgr: np.ndarray, encoding: str, jpeg_quality: int = 95) -> bytes:
    """Encode a BGR uint8 image (H×W×3) as JPEG (quality ``jpeg_quality``) or PNG bytes."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 BGR image, got {image_bgr.dtype} {image_bgr.shape}")
    if encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    elif encoding == "png":
        ok, buf = cv2.imencode(".png", image_bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        raise ValueError(f"unknown image encoding {encoding!r}; expected one of {ENCODINGS}")
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image_bgr.shape} as {encoding}")
    return buf.tobytes()


def decode_image(data: bytes | np.ndarray, what: str = "image") -> np.ndarray:
    """Decode encoded bytes into a BGR uint8 H×W×3 array with OpenCV (as Caffe does)."""
    arr = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    try:
        img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise ShardError(f"{what}: image bytes could not be decoded ({' '.join(str(e).split())[:160]})") from None
    if img is None:
        raise ShardError(f"{what}: image bytes could not be decoded")
    return img


@dataclass(frozen=True)
class ShardItem:
    """One record: decoded BGR uint8 image, float32 label vector (C,), source key and source flag."""

    image: np.ndarray
    label: np.ndarray
    key: str
    source: int


class ShardWriter:
    """Write records into a new shard set at ``out_dir`` (docs/datasets.md#shard-sets).

    Use as a context manager. The set is written into a sibling temporary folder
    ``.<name>.building-<pid>`` (with a marker file) and moved to ``out_dir`` only after its manifest
    is written, so a failed or interrupted build never touches ``out_dir``. The writer holds the
    output lock of ``out_dir`` (:mod:`replication.locking`) from construction to close/abort.

    An existing ``out_dir`` is replaced only when it holds nothing but a shard set's own files
    (``manifest.json``, ``part-*.h5`` and their temporary names) and is known to be ours: a complete
    set (its manifest) needs ``overwrite``; a folder of such files carrying the build marker, or an
    empty folder, is replaced. Anything else is refused with a one-line :class:`ShardError`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        dataset: str,
        split: str,
        class_names: Sequence[str],
        encoding: str = "jpeg",
        label_kind: str = "binary",
        records_per_shard: int = 1024,
        jpeg_quality: int = 95,
        overwrite: bool = False,
        extra: dict | None = None,
    ) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown image encoding {encoding!r}; expected one of {ENCODINGS}")
        if label_kind not in LABEL_KINDS:
            raise ValueError(f"unknown label kind {label_kind!r}; expected one of {LABEL_KINDS}")
        if records_per_shard < 1:
            raise ValueError("records_per_shard must be >= 1")
        self.out_dir = Path(out_dir)
        self._closed = True  # until the lock is held
        self._lock = ExitStack()
        self._lock.enter_context(output_lock(self.out_dir))
        try:
            check_replaceable(self.out_dir, overwrite=overwrite)
            remove_stale_builds(self.out_dir)
            self._build_dir = self.out_dir.parent / f"{BUILD_PREFIX.format(name=self.out_dir.name)}{os.getpid()}"
            self._build_dir.mkdir(parents=True)
            (self._build_dir / BUILD_MARKER).write_text(f"pid {os.getpid()}\n")
        except OSError as e:
            self._lock.close()
            raise StorageError(f"{self.out_dir}: cannot write here: {os_reason(e)}", e.errno) from None
        except BaseException:
            self._lock.close()
            raise
        self._closed = False
        self.dataset, self.split = dataset, split
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.encoding, self.label_kind = encoding, label_kind
        self.records_per_shard = records_per_shard
        self.jpeg_quality = jpeg_quality
        self.extra = dict(extra or {})
        self._shards: list[dict] = []
        self._buf_images: list[np.ndarray] = []
        self._buf_labels: list[np.ndarray] = []
        self._buf_keys: list[str] = []
        self._buf_source: list[int] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(
        self,
        image_bgr: np.ndarray | None = None,
        *,
        label: np.ndarray | Sequence[float] | None,
        key: str,
        source: int = SOURCE_REAL,
        encoded: bytes | None = None,
    ) -> None:
        """Append one record; give either a BGR uint8 image or its already ``encoded`` bytes."""
        if self._closed:
            raise ShardError(f"{self.out_dir}: writer already closed")
        if (image_bgr is None) == (encoded is None):
            raise ValueError("give exactly one of image_bgr or encoded")
        data = encode_image(image_bgr, self.encoding, self.jpeg_quality) if encoded is None else encoded
        if label is None:
            vec = np.full(self.num_classes, np.nan, dtype=np.float32)
        else:
            vec = np.asarray(label, dtype=np.float32).reshape(-1)
            if vec.shape[0] != self.num_classes:
                raise ShardError(
                    f"{self.out_dir}: record {key!r} has a label vector of length {vec.shape[0]}, "
                    f"expected {self.num_classes}"
                )
            if not np.isfinite(vec).all():
                raise ShardError(f"{self.out_dir}: record {key!r} has a label vector that is not finite")
        self._buf_images.append(np.frombuffer(data, dtype=np.uint8))
        self._buf_labels.append(vec)
        self._buf_keys.append(str(key))
        self._buf_source.append(int(source))
        self._count += 1
        if len(self._buf_keys) == self.records_per_shard:
            try:
                self._flush()
            except BaseException:
                self.abort()
                raise

    def _flush(self) -> None:
        if not self._buf_keys:
            return
        index = len(self._shards)
        name = shard_name(index)
        final = self._build_dir / name
        n = len(self._buf_keys)

        def fill(f: h5py.File) -> None:
            images = f.create_dataset("images", (n,), dtype=h5py.vlen_dtype(np.uint8))
            for i, b in enumerate(self._buf_images):
                images[i] = b
            f.create_dataset("labels", data=np.stack(self._buf_labels).astype(np.float32))
            f.create_dataset("keys", data=np.array(self._buf_keys, dtype=object), dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("source", data=np.asarray(self._buf_source, dtype=np.uint8))

        # built in memory and written with plain writes: HDF5 itself never meets a full disk (a failed
        # close inside HDF5 left a half-open file that crashed the interpreter at exit)
        data = hdf5_bytes(fill)
        try:
            atomic_write_bytes(final, data)
        except StorageError as e:  # name the set being built, not its temporary folder (removed next)
            raise StorageError(f"{self.out_dir}: {name}{str(e).split(name, 1)[-1]}", e.errno) from None
        self._shards.append({"file": name, "count": n, "sha256": hashlib.sha256(data).hexdigest()})
        self._buf_images, self._buf_labels, self._buf_keys, self._buf_source = [], [], [], []

    def close(self) -> dict:
        """Flush the last shard and write the manifest (last). Returns the manifest dict."""
        if self._closed:
            raise ShardError(f"{self.out_dir}: writer already closed")
        try:
            self._flush()
        except BaseException:
            self.abort()
            raise
        if self._count == 0:
            self.abort()
            raise ShardError(f"{self.out_dir}: no records were written (empty split)")
        manifest = {
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "split": self.split,
            "class_names": self.class_names,
            "num_classes": self.num_classes,
            "encoding": self.encoding,
            "label_kind": self.label_kind,
            "records_per_shard": self.records_per_shard,
            "num_records": self._count,
            "shards": self._shards,
            **({"extra": self.extra} if self.extra else {}),
        }
        try:
            atomic_write_text(self._build_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            (self._build_dir / BUILD_MARKER).unlink()
            replace_dir(self._build_dir, self.out_dir)
        except StorageError as e:
            self.abort()
            raise StorageError(f"{self.out_dir}: {MANIFEST}{str(e).split(MANIFEST, 1)[-1]}", e.errno) from None
        except OSError as e:
            self.abort()
            raise StorageError(f"{self.out_dir}: cannot move the finished set into place: {os_reason(e)}",
                               e.errno) from None
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._lock.close()
        return manifest

    def abort(self) -> None:
        """Remove everything written so far (``out_dir`` itself is left as it was)."""
        self._closed = True
        shutil.rmtree(self._build_dir, ignore_errors=True)
        self._lock.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()


def is_shard_set(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a complete shard set (its manifest exists)."""
    return (Path(path) / MANIFEST).is_file()


def load_manifest(path: str | os.PathLike) -> dict:
    """Read and validate a shard set's manifest; a clear :class:`ShardError` otherwise."""
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise ShardError(f"{root}: no such shard set folder")
    if not mpath.is_file():
        raise ShardError(f"{root}: not a shard set (no {MANIFEST}; an interrupted build leaves none)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{mpath}: malformed manifest ({e})") from None
    for field in ("format_version", "class_names", "shards", "num_records", "encoding", "label_kind"):
        if field not in manifest:
            raise ShardError(f"{mpath}: manifest lacks the field {field!r}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ShardError(f"{mpath}: format version {manifest['format_version']} is not {FORMAT_VERSION}")
    for s in manifest["shards"]:
        if not (isinstance(s, dict) and isinstance(s.get("file"), str) and re.fullmatch(r"part-\d{5}\.h5", s["file"])
                and isinstance(s.get("count"), int) and s["count"] >= 0 and isinstance(s.get("sha256"), str)):
            raise ShardError(f"{mpath}: malformed shard entry {str(s)[:80]}")
    if sum(s["count"] for s in manifest["shards"]) != manifest["num_records"]:
        raise ShardError(f"{mpath}: shard counts do not add up to num_records")
    return manifest


def manifest_hash(manifest: dict) -> str:
    """Content hash of a shard set: SHA-256 over its class names and per-shard SHA-256 values.

    Label files store it to tie themselves to the exact pixels they label.
    """
    h = hashlib.sha256()
    h.update(json.dumps(manifest["class_names"]).encode())
    for s in manifest["shards"]:
        h.update(f"{s['file']}:{s['count']}:{s['sha256']}".encode())
    return h.hexdigest()


class ShardSet:
    """Random access to a shard set by global index (lazy, fork-safe HDF5 handles)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.manifest = load_manifest(self.path)
        self.class_names: list[str] = list(self.manifest["class_names"])
        counts = np.array([s["count"] for s in self.manifest["shards"]], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._files = [s["file"] for s in self.manifest["shards"]]
        self._handles: dict[int, _OpenShard] = {}
        self._pid: int | None = None
        self._verified: set[int] = set()  # shards whose SHA-256 matched (kept across fork: same files)

    # -- metadata -----------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.manifest["num_records"])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def label_kind(self) -> str:
        return self.manifest["label_kind"]

    @property
    def dataset(self) -> str:
        return self.manifest.get("dataset", "")

    @property
    def content_hash(self) -> str:
        return manifest_hash(self.manifest)

    # -- access -------------------------------------------------------------------------
    def _locate(self, index: int) -> tuple[int, int]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"{self.path}: index {index} out of range for {n} records")
        shard = int(np.searchsorted(self._starts, index, side="right") - 1)
        return shard, index - int(self._starts[shard])

    def _handle(self, shard: int) -> _OpenShard:
        pid = os.getpid()
        if self._pid != pid:  # first use in this process (e.g. a forked DataLoader worker)
            self._handles = {}
            self._pid = pid
        f = self._handles.get(shard)
        if f is None:
            entry = self.manifest["shards"][shard]
            path = self.path / entry["file"]
            if shard not in self._verified:
                check_shard_digest(path, entry["sha256"])
                self._verified.add(shard)
            try:
                f = _OpenShard(h5py.File(path, "r"))
            except (OSError, KeyError) as e:
                raise ShardError(f"{path}: cannot open shard ({e})") from None
            problem = f.check(entry["count"], self.num_classes)
            if problem:
                f.file.close()
                raise ShardError(f"{path}: {problem}; the shard set is damaged (run `spl data verify {self.path}`)")
            self._handles[shard] = f
        return f

    def read_encoded(self, index: int) -> bytes:
        """The stored encoded bytes of record ``index``."""
        shard, row = self._locate(index)
        return self._handle(shard).images[row].tobytes()

    def __getitem__(self, index: int) -> ShardItem:
        shard, row = self._locate(index)
        f = self._handle(shard)
        image = decode_image(f.images[row], f"{self.path / self._files[shard]} record {row}")
        return ShardItem(image=image, label=f.labels[row].copy(), key=f.keys[row], source=int(f.source[row]))

    def __iter__(self) -> Iterator[ShardItem]:
        for i in range(len(self)):
            yield self[i]

    def labels(self) -> np.ndarray:
        """All label vectors, N×C float32 (NaN rows for unlabeled generated sets)."""
        return np.concatenate([self._handle(s).labels for s in range(len(self._files))]).astype(np.float32)

    def keys(self) -> list[str]:
        """All record keys in index order."""
        return [k for s in range(len(self._files)) for k in self._handle(s).keys]

    def sources(self) -> np.ndarray:
        """All source flags (0 real, 1 generated), uint8 N."""
        return np.concatenate([self._handle(s).source for s in range(len(self._files))])

    def close(self) -> None:
        for f in self._handles.values():
            try:
                f.file.close()
            except Exception:  # pragma: no cover - best effort
                pass
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_pid"] = None
        return state

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass


def check_shard_digest(path: Path, expected: str) -> None:
    """Raise :class:`ShardError` unless the file ``path`` exists and its SHA-256 is ``expected``."""
    try:
        digest = sha256_file(path)
    except OSError as e:
        raise ShardError(f"{path}: cannot read shard ({e.strerror or e})") from None
    if digest != expected:
        raise ShardError(f"{path}: SHA-256 does not match the manifest (manifest {expected[:12]}…, file "
                         f"{digest[:12]}…); the shard is damaged or was edited, rebuild the shard set")


class _OpenShard:
    """An open shard: the lazily read ``images`` dataset plus labels, keys and flags held in memory."""

    def check(self, count: int, num_classes: int) -> str | None:
        """A problem with this shard's row counts or label width against the manifest, or None."""
        for name, rows in (("images", self.images.shape[0]), ("labels", self.labels.shape[0]),
                           ("keys", len(self.keys)), ("source", self.source.shape[0])):
            if rows != count:
                return f"dataset {name!r} has {rows} rows, the manifest says {count}"
        if self.labels.ndim != 2 or self.labels.shape[1] != num_classes:
            return f"labels have shape {self.labels.shape}, expected (N, {num_classes})"
        return None

    def __init__(self, file: h5py.File) -> None:
        self.file = file
        self.images = file["images"]
        self.labels = np.asarray(file["labels"][:], dtype=np.float32)
        self.keys = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in file["keys"][:]]
        self.source = np.asarray(file["source"][:], dtype=np.uint8)


def verify_shard_set(path: str | os.PathLike) -> list[str]:
    """Check every shard's presence, SHA-256 and record count; return a list of problems (empty = OK)."""
    root = Path(path)
    manifest = load_manifest(root)
    problems: list[str] = []
    c = len(manifest["class_names"])
    for s in manifest["shards"]:
        p = root / s["file"]
        if not p.is_file():
            problems.append(f"{p}: shard file missing")
            continue
        digest = sha256_file(p)
        if digest != s["sha256"]:
            problems.append(f"{p}: SHA-256 mismatch (manifest {s['sha256'][:12]}…, file {digest[:12]}…)")
            continue
        try:
            with h5py.File(p, "r") as f:
                for name in ("images", "labels", "keys", "source"):
                    if f[name].shape[0] != s["count"]:
                        problems.append(f"{p}: dataset {name!r} has {f[name].shape[0]} rows, "
                                        f"manifest says {s['count']}")
                if f["labels"].ndim != 2 or f["labels"].shape[1] != c:
                    problems.append(f"{p}: labels have shape {f['labels'].shape}, expected (N, {c})")
        except (OSError, KeyError) as e:
            problems.append(f"{p}: unreadable shard ({e})")
    listed = {s["file"] for s in manifest["shards"]}
    for name in foreign_files(root):
        problems.append(f"{root / name}: unexpected file (not part of a shard set)")
    for p in sorted(root.glob("part-*.h5")):
        if p.name not in listed:
            problems.append(f"{p}: unexpected part file (not listed in the manifest)")
    return problems
