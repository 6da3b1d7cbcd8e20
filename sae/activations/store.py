"""Streaming on-disk activation store: sharded safetensors plus one manifest.json.

Layout of a store directory:
    manifest.json                 what was captured, and the list of finished shards
    shard_000000.safetensors      `activations` [n, d_in] (stored dtype), `token_ids` [n] int32
    shard_000001.safetensors ...
    .writer.lock                  held (flock) while an ActivationWriter is open

Crash safety: every file is written to a temporary name, fsynced and renamed over its
final name (os.replace is atomic on POSIX), and a shard is listed in the manifest only after
it is on disk. So whenever a process dies, manifest.json describes a valid store, and its
`rows_done` counts only input rows whose tokens are all inside listed shards; a new
ActivationWriter on the same directory resumes from there.

Reading streams one shard at a time through a bounded shuffle buffer (see buffer.py), so
RAM does not grow with the store. Nothing here uses pickle.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import queue
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import safetensors.torch
import torch
from torch import Tensor

from sae.activations.buffer import BufferStats, sequential_batches, shuffled_batches
from sae.io.atomic import atomic_write_bytes, fsync_dir

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK_FILE = ".writer.lock"
TMP_SUFFIX = ".tmp"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
INT32_MAX = 2**31 - 1


_FIX_SHARD = "delete that shard file and re-run the capture (it resumes from the shard before)"


class StoreError(ValueError):
    """A problem with an activation store; the message names the problem and the fix."""


# ---------------------------------------------------------------- files and manifest

def _shard_name(index: int) -> str:
    return f"shard_{index:06d}.safetensors"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_bytes(root / MANIFEST, json.dumps(manifest, indent=1).encode())


def _read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path} is not valid JSON ({e}); delete {root} and re-capture") from None
    _check_manifest(manifest, root)
    return manifest


def _check_manifest(manifest: Any, root: Path) -> None:
    if not isinstance(manifest, dict):
        raise StoreError(f"{root / MANIFEST} is not an activation-store manifest; pick another dir")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreError(f"{root}: store format version {version!r} is not supported (this code reads "
                         f"{FORMAT_VERSION}); re-capture it with this version")
    needed = ("meta", "d_in", "dtype", "shards", "rows_done", "n_tokens", "complete")
    missing = [k for k in needed if k not in manifest]
    if missing:
        raise StoreError(f"{root / MANIFEST} lacks {missing}; delete {root} and re-capture")
    if manifest["dtype"] not in DTYPES:
        raise StoreError(f"{root}: unknown stored dtype {manifest['dtype']!r}; re-capture the store")


def _json_roundtrip(meta: dict) -> dict:
    """What `meta` looks like after a save and load (tuples become lists), for comparing."""
    try:
        return json.loads(json.dumps(meta))
    except (TypeError, ValueError) as e:
        raise StoreError(f"meta must be JSON-serialisable ({e}); pass plain str/int/float/list/dict values") from None


def _shard_bytes(acts: Tensor, ids: Tensor, index: int, rows_end: int) -> bytes:
    tensors = {"activations": acts.contiguous(), "token_ids": ids.contiguous()}
    metadata = {"format": "sae-activation-shard", "index": str(index), "rows_end": str(rows_end)}
    return safetensors.torch.save(tensors, metadata=metadata)


# ---------------------------------------------------------------- writer

class _ShardSink:
    """Writes shards and keeps the manifest in step. Runs on the writer thread (or inline).

    It holds no reference to the ActivationWriter, so dropping an unclosed writer lets the
    garbage collector stop this thread (that is how a crash without close() is simulated).
    """

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest        # replaced (never mutated) so readers see whole states
        self.error: BaseException | None = None

    def write(self, acts: Tensor, ids: Tensor, rows_end: int) -> None:
        if self.error is not None:      # after a failure, write nothing more: the manifest stays valid
            return
        try:
            self._write(acts, ids, rows_end)
        except BaseException as e:      # re-raised on the caller's thread by ActivationWriter
            self.error = e

    def _write(self, acts: Tensor, ids: Tensor, rows_end: int) -> None:
        index = len(self.manifest["shards"])
        name = _shard_name(index)
        data = _shard_bytes(acts, ids, index, rows_end)
        atomic_write_bytes(self.root / name, data, TMP_SUFFIX)
        entry = {"file": name, "n_tokens": int(acts.shape[0]), "sha256": hashlib.sha256(data).hexdigest(),
                 "bytes": len(data), "rows_end": int(rows_end)}
        self.set_manifest(shards=self.manifest["shards"] + [entry], rows_done=int(rows_end),
                          n_tokens=self.manifest["n_tokens"] + entry["n_tokens"])

    def set_manifest(self, **changes: Any) -> None:
        manifest = {**self.manifest, **changes, "updated": _now()}
        _write_manifest(self.root, manifest)
        self.manifest = manifest


_STOP = object()


def _sink_loop(jobs: queue.Queue, sink: _ShardSink) -> None:
    while True:
        job = jobs.get()
        if job is _STOP:
            jobs.task_done()
            return
        sink.write(*job)
        jobs.task_done()     # drain() waits on these


def _stop_thread(jobs: queue.Queue, thread: threading.Thread | None, lock_fd: list[int]) -> None:
    """Finish queued shards, end the thread, release the directory lock. Idempotent."""
    if thread is threading.current_thread():
        # the garbage collector may run this finalizer on the writer thread itself, which
        # cannot join itself (nor wait on its own queue): hand the stop to a helper thread
        threading.Thread(target=_stop_thread, args=(jobs, thread, lock_fd), daemon=True).start()
        return
    if thread is not None and thread.is_alive():
        jobs.put(_STOP)
        thread.join()
    if lock_fd:
        os.close(lock_fd.pop())     # closing the fd releases the flock


def _acquire_lock(root: Path) -> int:
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"{root} is being written by another ActivationWriter; wait for it to finish, "
                         f"or close() it, or pick another dir") from None
    return fd


class ActivationWriter:
    """Appends captured activations to a store; resumable after a crash.

    Usage (capture loop):
        with ActivationWriter(root, meta, d_in) as w:
            for rows in batches_of_rows(start=w.rows_done):   # skip what is already on disk
                w.add(acts, token_ids, rows_finished=len(rows))
    Leaving the `with` block normally marks the store complete; an exception flushes the
    whole rows buffered so far and leaves the store resumable (complete=False).

    Each add() is a unit for the row accounting: a shard is cut only after an add() whose
    tokens end on a row boundary (`ends_row`, default True), so a shard holds at least
    `shard_tokens` tokens (a little more, up to one add()'s worth) and never half a row.
    """

    def __init__(self, root: Path | str, meta: dict, d_in: int, shard_tokens: int = 65536,
                 dtype: str = "float32", *, background: bool = True):
        self.root = Path(root)
        self._check_args(d_in, shard_tokens, dtype)
        self.meta = _json_roundtrip(meta)
        self.d_in, self.shard_tokens, self.dtype = int(d_in), int(shard_tokens), dtype
        self._torch_dtype = DTYPES[dtype]
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / MANIFEST).exists():
            self._refuse_foreign_files()     # before the lock file, so we leave no trace there
        self._lock_fd = [_acquire_lock(self.root)]
        try:
            manifest = self._open_manifest()
        except BaseException:
            os.close(self._lock_fd.pop())
            raise
        self._sink = _ShardSink(self.root, manifest)
        self._jobs: queue.Queue = queue.Queue(maxsize=1)   # one shard queued + one being written
        self._thread = None
        if background:
            self._thread = threading.Thread(target=_sink_loop, args=(self._jobs, self._sink),
                                            name="activation-writer", daemon=True)
            self._thread.start()
        self._finalizer = weakref.finalize(self, _stop_thread, self._jobs, self._thread, self._lock_fd)
        self._chunks: list[tuple[Tensor, Tensor]] = []
        self._buffered = 0                      # tokens in _chunks
        self._boundary = (0, manifest["rows_done"])  # (chunks, rows) at the last row boundary
        self.rows_submitted = manifest["rows_done"]  # rows passed to add(), durable or not
        self._n_adds = 0
        self._closed = False

    # -- public state

    @property
    def rows_done(self) -> int:
        """Input rows whose tokens are all in finished shards: where a resumed capture restarts."""
        return self._sink.manifest["rows_done"]

    @property
    def n_tokens(self) -> int:
        """Tokens in finished shards."""
        return self._sink.manifest["n_tokens"]

    @property
    def complete(self) -> bool:
        return bool(self._sink.manifest["complete"])

    @property
    def manifest(self) -> dict:
        return self._sink.manifest

    # -- opening

    @staticmethod
    def _check_args(d_in: int, shard_tokens: int, dtype: str) -> None:
        if dtype not in DTYPES:
            raise StoreError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
        if int(d_in) <= 0 or int(shard_tokens) <= 0:
            raise StoreError(f"d_in ({d_in}) and shard_tokens ({shard_tokens}) must be positive")

    def _open_manifest(self) -> dict:
        manifest = _read_manifest(self.root)
        if manifest is None:
            manifest = {"format_version": FORMAT_VERSION, "meta": self.meta, "d_in": self.d_in,
                        "dtype": self.dtype, "shard_tokens": self.shard_tokens, "shards": [],
                        "rows_done": 0, "n_tokens": 0, "complete": False,
                        "created": _now(), "updated": _now()}
            # written before any shard, so the directory is claimed for this capture at once
            _write_manifest(self.root, manifest)
            return manifest
        self._check_same_capture(manifest)
        manifest = self._drop_broken_tail(manifest)
        self._remove_leftovers(manifest)
        return manifest

    def _refuse_foreign_files(self) -> None:
        # a writer killed before its first manifest landed leaves only these behind
        ours = {LOCK_FILE, MANIFEST + TMP_SUFFIX}
        foreign = [p.name for p in self.root.iterdir() if p.name not in ours]
        if foreign:
            raise StoreError(f"{self.root} is not empty and holds no activation store ({foreign[:3]}...); "
                             f"pick a new or empty dir")

    def _check_same_capture(self, manifest: dict) -> None:
        theirs = (manifest["meta"], manifest["d_in"], manifest["dtype"])
        if theirs != (self.meta, self.d_in, self.dtype):
            raise StoreError(f"{self.root} holds another capture (meta/d_in/dtype differ: stored "
                             f"{_describe(*theirs)}, asked {_describe(self.meta, self.d_in, self.dtype)}); "
                             f"pick another dir or delete this one")

    def _drop_broken_tail(self, manifest: dict) -> dict:
        """Keep shards up to the first missing or wrong-sized file, so resume restarts there.

        A full sha256 pass would read the whole store at every resume; size is a cheap check
        for truncation, and readers verify the hashes.
        """
        shards = manifest["shards"]
        for i, entry in enumerate(shards):
            path = self.root / entry["file"]
            if path.exists() and path.stat().st_size == entry.get("bytes", path.stat().st_size):
                continue
            rows = shards[i - 1]["rows_end"] if i else 0
            warnings.warn(f"{path} is missing or truncated: dropping it and {len(shards) - i - 1} later "
                          f"shard(s); capture resumes from row {rows}")
            kept = shards[:i]
            manifest = {**manifest, "shards": kept, "rows_done": rows, "complete": False,
                        "n_tokens": sum(s["n_tokens"] for s in kept), "updated": _now()}
            _write_manifest(self.root, manifest)
            return manifest
        return manifest

    def _remove_leftovers(self, manifest: dict) -> None:
        """Temp files and shards written after the last manifest update belong to a dead writer."""
        listed = {s["file"] for s in manifest["shards"]}
        for path in self.root.iterdir():
            stray_shard = path.name.startswith("shard_") and path.name.endswith(".safetensors")
            if path.name.endswith(TMP_SUFFIX) or (stray_shard and path.name not in listed):
                path.unlink()

    # -- writing

    def add(self, acts: Tensor, token_ids: Tensor, rows_finished: int, *, ends_row: bool = True) -> None:
        """Buffer the activations of `rows_finished` whole rows (sequences).

        acts [n_tokens, d_in] any float dtype and device (stored as self.dtype, on CPU);
        token_ids [n_tokens] ints. Set ends_row=False when these tokens stop inside a row
        (a long row fed in pieces): no shard is cut after such a call.
        """
        self._raise_if_unusable()
        self._n_adds += 1
        acts, token_ids = self._validated(acts, token_ids, rows_finished)
        self._chunks.append((acts, token_ids))
        self._buffered += acts.shape[0]
        self.rows_submitted += int(rows_finished)
        if ends_row:
            self._boundary = (len(self._chunks), self.rows_submitted)
            if self._buffered >= self.shard_tokens:
                self._flush(len(self._chunks), self.rows_submitted)

    def drain(self) -> None:
        """Block until every shard handed to the background thread is on disk (buffer untouched)."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.join()
        self._raise_sink_error()

    def close(self, complete: bool = True) -> None:
        """Write what is buffered and stop. complete=True marks the capture finished;
        complete=False keeps it resumable (only whole rows are flushed). Idempotent."""
        if self._closed:
            return
        try:
            if complete:
                self._flush(len(self._chunks), self.rows_submitted)
            else:
                self._flush(*self._boundary)
            self._finish_thread()
            self._raise_sink_error()
            if complete and not self.complete:
                self._sink.set_manifest(complete=True)
        finally:
            self._closed = True
            self._finalizer()

    def abort(self) -> None:
        """Stop without writing the buffer, like a crash but releasing the lock at once.
        Shards already handed to the writer thread are still finished."""
        self._chunks, self._buffered = [], 0
        self._closed = True
        self._finalizer()

    def __enter__(self) -> "ActivationWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)

    # -- internals

    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise StoreError(f"writer for {self.root} is closed; open a new ActivationWriter to resume")
        if self.complete:
            raise StoreError(f"{self.root} is already complete (rows_done={self.rows_done}); "
                             f"check writer.complete before capturing, or delete the dir to re-capture")
        self._raise_sink_error()

    def _validated(self, acts: Tensor, token_ids: Tensor, rows_finished: int) -> tuple[Tensor, Tensor]:
        where = f"add() call {self._n_adds} (rows {self.rows_submitted}..{self.rows_submitted + rows_finished})"
        if not isinstance(acts, Tensor) or acts.ndim != 2 or acts.shape[1] != self.d_in:
            raise StoreError(f"{where}: acts must be a [n_tokens, {self.d_in}] tensor, got "
                             f"{getattr(acts, 'shape', type(acts))}; reshape to (tokens, d_in)")
        if not acts.is_floating_point():
            raise StoreError(f"{where}: acts dtype {acts.dtype} is not floating point; pass the raw activations")
        if not isinstance(token_ids, Tensor) or tuple(token_ids.shape) != (acts.shape[0],):
            raise StoreError(f"{where}: token_ids must have shape [{acts.shape[0]}], got "
                             f"{getattr(token_ids, 'shape', type(token_ids))}; pass one id per token")
        if token_ids.is_floating_point() or token_ids.dtype == torch.bool:
            raise StoreError(f"{where}: token_ids dtype {token_ids.dtype} is not an integer type; pass the input ids")
        if isinstance(rows_finished, bool) or int(rows_finished) != rows_finished or rows_finished < 0:
            raise StoreError(f"{where}: rows_finished must be a non-negative int, got {rows_finished!r}")
        bad = _count_nonfinite(acts)
        if bad:
            raise StoreError(f"{where}: acts contain {bad} NaN/inf values; nothing from this call was stored "
                             f"- fix the capture (model dtype? hook?) and add() again")
        if token_ids.numel() and (int(token_ids.min()) < -INT32_MAX or int(token_ids.max()) > INT32_MAX):
            raise StoreError(f"{where}: token ids do not fit int32; pass real vocabulary ids")
        stored = acts.detach().to(device="cpu", dtype=self._torch_dtype, copy=True)
        overflow = _count_nonfinite(stored) if stored.dtype != acts.dtype else 0
        if overflow:
            raise StoreError(f"{where}: {overflow} values overflow {self.dtype}; store as float32 instead")
        return stored, token_ids.detach().to(device="cpu", dtype=torch.int32, copy=True)

    def _flush(self, n_chunks: int, rows_end: int) -> None:
        """Hand the first n_chunks (ending on a row boundary, rows_end rows in all) to the sink."""
        if n_chunks == 0:
            return
        chunks, self._chunks = self._chunks[:n_chunks], self._chunks[n_chunks:]
        acts = torch.cat([a for a, _ in chunks])
        ids = torch.cat([i for _, i in chunks])
        self._buffered -= acts.shape[0]
        self._boundary = (max(0, self._boundary[0] - n_chunks), self._boundary[1])
        if self._thread is None:
            self._sink.write(acts, ids, rows_end)
        else:
            self._put_job((acts, ids, rows_end))
        self._raise_sink_error()

    def _put_job(self, job: tuple) -> None:
        # a bounded queue: capture waits for the disk rather than piling shards up in RAM
        self._jobs.put(job)

    def _finish_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(_STOP)
            self._thread.join()

    def _raise_sink_error(self) -> None:
        if self._sink.error is not None:
            err = self._sink.error
            raise StoreError(f"writing a shard to {self.root} failed ({type(err).__name__}: {err}); "
                             f"the store stays valid up to row {self.rows_done} - fix the cause (disk full?) "
                             f"and resume") from err


def _count_nonfinite(x: Tensor) -> int:
    # A sum is NaN/inf whenever any element is, and it is a cheap reduction; isfinite over
    # the whole tensor costs ~30x more here, so it only runs to count when the sum says so.
    if torch.isfinite(x.sum(dtype=torch.float32)):
        return 0
    return int((~torch.isfinite(x)).sum())


def _describe(meta: dict, d_in: int, dtype: str) -> str:
    text = json.dumps({"d_in": d_in, "dtype": dtype, **meta}, sort_keys=True)
    return text if len(text) < 200 else text[:197] + "..."


# ---------------------------------------------------------------- reader

@dataclass(frozen=True)
class Segment:
    """Tokens [start, stop) of one shard; a store view is a list of these."""
    shard: int
    start: int
    stop: int

    @property
    def n_tokens(self) -> int:
        return self.stop - self.start


class ActivationStore:
    """Reads a store written by ActivationWriter, with bounded RAM.

    verify=True checks each shard's sha256 the first time this object (or a view of it)
    reads the shard; verify="all" checks every shard now (as does verify_all()); False skips it.
    """

    def __init__(self, root: Path | str, verify: bool | str = True):
        if verify not in (True, False, "all"):
            raise StoreError(f"verify must be True, False or 'all', got {verify!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise StoreError(f"activation store {self.root} does not exist; capture activations into it first")
        manifest = _read_manifest(self.root)
        if manifest is None:
            raise StoreError(f"{self.root} has no {MANIFEST}, so it is not an activation store (or its capture "
                             f"never started); capture into it or pick the right dir")
        self.manifest = manifest
        self.verify = verify
        self._verified: set[str] = set()          # shared with views: each file is hashed once
        self._check_files_exist()
        self.segments = [Segment(i, 0, s["n_tokens"]) for i, s in enumerate(manifest["shards"])]
        self.stats = BufferStats()
        if verify == "all":
            self.verify_all()

    # -- description

    @property
    def d_in(self) -> int:
        return int(self.manifest["d_in"])

    @property
    def meta(self) -> dict:
        return self.manifest["meta"]

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.manifest["dtype"]]

    @property
    def n_tokens(self) -> int:
        """Tokens in this view (the whole store unless this came from split())."""
        return sum(s.n_tokens for s in self.segments)

    def __len__(self) -> int:
        return self.n_tokens

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.root)!r}, n_tokens={self.n_tokens}, d_in={self.d_in}, "
                f"shards={len(self.shard_paths())}, complete={self.complete})")

    def shard_paths(self) -> list[Path]:
        """Files this view reads, in store order."""
        seen = dict.fromkeys(s.shard for s in self.segments)
        return [self.root / self.manifest["shards"][i]["file"] for i in seen]

    # -- integrity

    def _check_files_exist(self) -> None:
        for entry in self.manifest["shards"]:
            if not (self.root / entry["file"]).exists():
                raise StoreError(f"shard {entry['file']} listed in {self.root / MANIFEST} is missing; restore it, "
                                 f"or re-run the capture to re-capture from that shard on")

    def verify_all(self) -> None:
        """Hash every shard of this view now (instead of lazily on first read)."""
        for i in dict.fromkeys(s.shard for s in self.segments):
            self._check_hash(i)

    def _check_hash(self, index: int) -> None:
        entry = self.manifest["shards"][index]
        if entry["file"] in self._verified:
            return
        path = self.root / entry["file"]
        if _file_sha256(path) != entry["sha256"]:
            raise StoreError(f"shard {path} fails its sha256 check (corrupt or modified); {_FIX_SHARD}")
        self._verified.add(entry["file"])

    def _read_shard(self, index: int) -> tuple[Tensor, Tensor]:
        entry = self.manifest["shards"][index]
        path = self.root / entry["file"]
        fix = _FIX_SHARD
        if self.verify:
            self._check_hash(index)
        try:
            # memory-mapped: pages come from the page cache as the buffer copies them, so a
            # shard costs no extra RAM copy (2-3x faster than read + deserialize here)
            tensors = safetensors.torch.load_file(path)
            acts, ids = tensors["activations"], tensors["token_ids"]
        except Exception as e:  # safetensors raises its own error types
            raise StoreError(f"shard {path} is unreadable ({type(e).__name__}: {e}); {fix}") from None
        if tuple(acts.shape) != (entry["n_tokens"], self.d_in) or tuple(ids.shape) != (entry["n_tokens"],):
            raise StoreError(f"shard {path} has shape {tuple(acts.shape)}, manifest says "
                             f"({entry['n_tokens']}, {self.d_in}); {fix}")
        return acts, ids

    def _chunks(self, segments: list[Segment]) -> Iterator[tuple[Tensor, Tensor]]:
        for seg in segments:
            acts, ids = self._read_shard(seg.shard)
            yield acts[seg.start:seg.stop], ids[seg.start:seg.stop]

    # -- views

    def _view(self, segments: list[Segment]) -> "ActivationStore":
        view = object.__new__(ActivationStore)
        view.root, view.manifest, view.verify = self.root, self.manifest, self.verify
        view._verified = self._verified
        view.segments = segments
        view.stats = BufferStats()
        return view

    def split(self, eval_fraction: float) -> tuple["ActivationStore", "ActivationStore"]:
        """(train, eval) views that never share a token; deterministic.

        With enough shards (eval_fraction * shards >= 2) eval takes whole shards spread
        evenly over the store, so it samples the whole corpus and reading it touches only
        its own files. Otherwise eval is the last eval_fraction of the tokens.
        """
        if not 0 < eval_fraction < 1:
            raise StoreError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
        if self.n_tokens < 2:
            raise StoreError(f"{self.root} holds {self.n_tokens} token(s), too few to split; capture more")
        if eval_fraction * len(self.segments) >= 2:
            return self._split_by_segments(eval_fraction)
        return self._split_tail(eval_fraction)

    def _split_by_segments(self, eval_fraction: float) -> tuple["ActivationStore", "ActivationStore"]:
        n = len(self.segments)
        n_eval = round(eval_fraction * n)
        picked = {int((j + 0.5) * n / n_eval) for j in range(n_eval)}
        train = [s for i, s in enumerate(self.segments) if i not in picked]
        evals = [s for i, s in enumerate(self.segments) if i in picked]
        return self._view(train), self._view(evals)

    def _split_tail(self, eval_fraction: float) -> tuple["ActivationStore", "ActivationStore"]:
        cut = self.n_tokens - min(self.n_tokens - 1, max(1, math.ceil(eval_fraction * self.n_tokens)))
        train, evals, pos = [], [], 0
        for seg in self.segments:
            head = min(max(cut - pos, 0), seg.n_tokens)   # tokens of seg before the cut
            if head:
                train.append(Segment(seg.shard, seg.start, seg.start + head))
            if head < seg.n_tokens:
                evals.append(Segment(seg.shard, seg.start + head, seg.stop))
            pos += seg.n_tokens
        return self._view(train), self._view(evals)

    # -- reading

    def iter_batches(self, batch_size: int, shuffle: bool = True, buffer_tokens: int = 262144,
                     seed: int = 0, epochs: int = 1, start_batch: int = 0, with_token_ids: bool = False,
                     drop_last: bool = False, out_dtype: torch.dtype = torch.float32,
                     ) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        """Batches of activations [batch_size, d_in] (out_dtype), optionally with token ids (int64).

        Every token appears exactly once per epoch; the last batch of an epoch may be short
        (unless drop_last). shuffle=True: shards in a seeded random order, mixed through a
        pool of at most buffer_tokens rows, so RAM is about one shard + the pool whatever
        the store size. Batch k is the same for the same seed, store and arguments, so
        start_batch=k continues an interrupted run exactly. `self.stats` records the
        largest pool size and shards read.
        """
        self._check_iter_args(batch_size, buffer_tokens, epochs, start_batch)
        self.stats = BufferStats()
        per_epoch = self._batches_per_epoch(batch_size, drop_last)
        first_epoch = start_batch // per_epoch if per_epoch else epochs   # whole epochs skip unread
        skip = start_batch - first_epoch * per_epoch if per_epoch else 0
        for epoch in range(first_epoch, epochs):
            batches = (self._shuffled_epoch(batch_size, buffer_tokens, seed, epoch, skip, drop_last) if shuffle
                       else self._sequential_epoch(batch_size, skip, drop_last))
            for batch in batches:
                if batch is not None:
                    acts, ids = batch
                    acts = acts.to(out_dtype)
                    yield (acts, ids.long()) if with_token_ids else acts
            skip = 0

    def _check_iter_args(self, batch_size: int, buffer_tokens: int, epochs: int, start_batch: int) -> None:
        if batch_size <= 0 or epochs < 0 or start_batch < 0:
            raise StoreError(f"need batch_size > 0, epochs >= 0, start_batch >= 0; got "
                             f"{batch_size}, {epochs}, {start_batch}")
        if buffer_tokens < batch_size:
            raise StoreError(f"buffer_tokens ({buffer_tokens}) must be >= batch_size ({batch_size}); raise it")

    def _batches_per_epoch(self, batch_size: int, drop_last: bool) -> int:
        full, rest = divmod(self.n_tokens, batch_size)
        return full + (1 if rest and not drop_last else 0)

    def _shuffled_epoch(self, batch_size: int, buffer_tokens: int, seed: int, epoch: int, skip: int,
                        drop_last: bool) -> Iterator:
        gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        order = torch.randperm(len(self.segments), generator=gen).tolist()
        chunks = self._chunks([self.segments[i] for i in order])
        capacity = max(1, min(buffer_tokens, self.n_tokens))   # no bigger pool than the data
        return shuffled_batches(chunks, batch_size, capacity, self.d_in, self.dtype, gen, self.stats,
                                skip=skip, drop_last=drop_last)

    def _sequential_epoch(self, batch_size: int, skip: int, drop_last: bool) -> Iterator:
        # in order, skipped batches are a token offset: drop whole segments without reading them
        return sequential_batches(self._chunks(_segments_from(self.segments, skip * batch_size)),
                                  batch_size, self.stats, drop_last=drop_last)

    def load_all(self, max_tokens: int | None = None, with_token_ids: bool = False,
                 out_dtype: torch.dtype = torch.float32) -> Tensor | tuple[Tensor, Tensor]:
        """The first max_tokens tokens of this view in store order (all if None). For small
        stores and eval sets: this holds everything in RAM."""
        limit = self.n_tokens if max_tokens is None else min(int(max_tokens), self.n_tokens)
        acts_out = torch.empty(limit, self.d_in, dtype=out_dtype)
        ids_out = torch.empty(limit, dtype=torch.long)
        pos = 0
        for acts, ids in self._chunks(_segments_until(self.segments, limit)):
            n = acts.shape[0]
            acts_out[pos:pos + n] = acts
            ids_out[pos:pos + n] = ids
            pos += n
        return (acts_out, ids_out) if with_token_ids else acts_out


def _file_sha256(path: Path) -> str:
    """Hash in 1 MiB pieces: no shard-sized allocation just to check it."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while piece := f.read(1 << 20):
                digest.update(piece)
    except OSError as e:
        raise StoreError(f"cannot read shard {path} ({e}); restore it or re-capture") from None
    return digest.hexdigest()


def _epoch_seed(seed: int, epoch: int) -> int:
    # hashlib, not hash(): the same (seed, epoch) must give the same order in every process
    digest = hashlib.sha256(f"activation-store:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _segments_from(segments: list[Segment], offset: int) -> list[Segment]:
    """The segments after skipping `offset` tokens."""
    out = []
    for seg in segments:
        if offset >= seg.n_tokens:
            offset -= seg.n_tokens
            continue
        out.append(Segment(seg.shard, seg.start + offset, seg.stop))
        offset = 0
    return out


def _segments_until(segments: list[Segment], limit: int) -> list[Segment]:
    """The segments holding the first `limit` tokens."""
    out = []
    for seg in segments:
        if limit <= 0:
            break
        take = min(limit, seg.n_tokens)
        out.append(Segment(seg.shard, seg.start, seg.start + take))
        limit -= take
    return out
