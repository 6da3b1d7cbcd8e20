"""Activation store: round trip, manifest, shuffling, RAM bound, integrity, crash/resume, split."""
from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from sae.activations.store import ActivationStore, ActivationWriter, StoreError

D_IN = 8
META = {"model_name": "toy", "hook_name": "blocks.0.hook_resid_post", "context_size": 6, "corpus": "synthetic"}
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- synthetic capture

def row_len(r: int) -> int:
    return 3 + r % 4            # rows of different lengths, so shard sizes are irregular


def row_data(r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row r's activations (a pure function of r) and its token ids r*1000 + position."""
    gen = torch.Generator().manual_seed(r)
    acts = torch.randn(row_len(r), D_IN, generator=gen)
    return acts, torch.arange(row_len(r)) + 1000 * r


def capture(writer: ActivationWriter, stop: int, rows_per_add: int = 3, start: int | None = None) -> None:
    """Add rows start..stop; by default start at writer.rows_done, as a resuming capture does."""
    r = writer.rows_done if start is None else start
    while r < stop:
        rows = range(r, min(r + rows_per_add, stop))
        parts = [row_data(i) for i in rows]
        writer.add(torch.cat([a for a, _ in parts]), torch.cat([t for _, t in parts]), len(rows))
        r = rows.stop


def reference(n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [row_data(r) for r in range(n_rows)]
    return torch.cat([a for a, _ in parts]), torch.cat([t for _, t in parts])


def write_store(root: Path, n_rows: int = 60, shard_tokens: int = 40, **kw) -> Path:
    with ActivationWriter(root, META, D_IN, shard_tokens=shard_tokens, **kw) as w:
        capture(w, n_rows)
    return root


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return write_store(tmp_path / "store")


# ---------------------------------------------------------------- round trip and manifest

@pytest.mark.parametrize("background", [True, False])
def test_round_trip_values_and_token_ids(tmp_path, background):
    root = write_store(tmp_path / "s", background=background)
    acts, ids = ActivationStore(root).load_all(with_token_ids=True)
    ref_acts, ref_ids = reference(60)
    assert torch.equal(acts, ref_acts)
    assert torch.equal(ids, ref_ids)


def test_in_order_batches_equal_load_all(store_dir):
    store = ActivationStore(store_dir)
    batches = list(store.iter_batches(7, shuffle=False, with_token_ids=True))
    assert all(a.shape[0] == 7 for a, _ in batches[:-1])
    assert torch.equal(torch.cat([a for a, _ in batches]), store.load_all())
    assert torch.equal(torch.cat([t for _, t in batches]), reference(60)[1])


def test_float16_storage(tmp_path):
    root = write_store(tmp_path / "s", dtype="float16")
    store = ActivationStore(root)
    assert store.dtype == torch.float16
    assert torch.equal(store.load_all(), reference(60)[0].half().float())


def test_load_all_max_tokens(store_dir):
    assert torch.equal(ActivationStore(store_dir).load_all(max_tokens=50), reference(60)[0][:50])


def test_manifest_contents(store_dir):
    manifest = json.loads((store_dir / "manifest.json").read_text())
    ref_ids = reference(60)[1]
    assert manifest["format_version"] == 1
    assert manifest["meta"] == META and manifest["d_in"] == D_IN and manifest["dtype"] == "float32"
    assert manifest["complete"] is True and manifest["rows_done"] == 60
    assert manifest["n_tokens"] == len(ref_ids) == sum(s["n_tokens"] for s in manifest["shards"])
    assert manifest["created"] and manifest["updated"]
    assert len(manifest["shards"]) > 3
    rows_start = 0
    for i, shard in enumerate(manifest["shards"]):
        path = store_dir / shard["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        if i < len(manifest["shards"]) - 1:
            assert shard["n_tokens"] >= manifest["shard_tokens"]
        # the shard holds exactly rows [rows_start, rows_end): no row straddles a shard
        ids = ActivationStore(store_dir)._read_shard(i)[1]
        expected = torch.cat([row_data(r)[1] for r in range(rows_start, shard["rows_end"])])
        assert torch.equal(ids.long(), expected)
        rows_start = shard["rows_end"]
    assert rows_start == 60


# ---------------------------------------------------------------- shuffling

def epoch_ids(store, **kw) -> list[torch.Tensor]:
    return [t for _, t in store.iter_batches(16, with_token_ids=True, buffer_tokens=64, **kw)]


def test_shuffle_is_deterministic_and_seed_dependent(store_dir):
    store = ActivationStore(store_dir)
    a, b = torch.cat(epoch_ids(store, seed=3)), torch.cat(epoch_ids(store, seed=3))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.cat(epoch_ids(store, seed=4)))
    assert not torch.equal(a, reference(60)[1])          # actually shuffled


def test_every_token_once_per_epoch(store_dir):
    store = ActivationStore(store_dir)
    n = store.n_tokens
    ids = torch.cat(epoch_ids(store, seed=1, epochs=3))
    assert len(ids) == 3 * n
    epochs = ids.split(n)
    for chunk in epochs:
        assert torch.equal(chunk.sort().values, reference(60)[1])
    assert not torch.equal(epochs[0], epochs[1])          # each epoch has its own order


def test_values_travel_with_their_token_ids(store_dir):
    store = ActivationStore(store_dir)
    ref_acts, ref_ids = reference(60)
    row_of = {int(t): i for i, t in enumerate(ref_ids)}
    for acts, ids in store.iter_batches(16, buffer_tokens=64, with_token_ids=True):
        assert torch.equal(acts, ref_acts[[row_of[int(t)] for t in ids]])


def test_shuffle_mixes_across_shards(store_dir):
    store = ActivationStore(store_dir)
    first = next(store.iter_batches(32, buffer_tokens=200, with_token_ids=True))[1]
    rows = (first // 1000).tolist()
    bounds = [s["rows_end"] for s in store.manifest["shards"]]
    shards_seen = {sum(r >= b for b in bounds) for r in rows}
    assert len(shards_seen) >= 2


@pytest.mark.parametrize("shuffle", [True, False])
def test_start_batch_resumes_at_the_same_position(store_dir, shuffle):
    store = ActivationStore(store_dir)
    kw = dict(batch_size=16, buffer_tokens=64, seed=7, epochs=3, shuffle=shuffle)
    full = list(store.iter_batches(**kw))
    per_epoch = -(-store.n_tokens // 16)
    for start in (1, per_epoch - 1, per_epoch + 2, 2 * per_epoch):
        resumed = list(store.iter_batches(start_batch=start, **kw))
        assert len(resumed) == len(full) - start
        assert all(torch.equal(x, y) for x, y in zip(resumed, full[start:]))


def test_drop_last(store_dir):
    store = ActivationStore(store_dir)
    sizes = [len(b) for b in store.iter_batches(16, buffer_tokens=64, drop_last=True)]
    assert sizes == [16] * (store.n_tokens // 16)


def test_shuffle_buffer_stays_bounded(tmp_path):
    root = write_store(tmp_path / "s", n_rows=300, shard_tokens=100)
    store = ActivationStore(root)
    assert store.n_tokens > 1000
    seen = sum(len(b) for b in store.iter_batches(8, buffer_tokens=64))
    assert seen == store.n_tokens
    assert store.stats.capacity == 64
    assert store.stats.max_buffer_rows == 64            # the bound was reached, never passed
    assert store.stats.shards_read == len(store.shard_paths())


def test_buffer_smaller_than_batch_is_refused(store_dir):
    with pytest.raises(StoreError, match="buffer_tokens"):
        next(ActivationStore(store_dir).iter_batches(64, buffer_tokens=32))


# ---------------------------------------------------------------- integrity

def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 16, len(data) - 8):    # inside the tensor data, not the header
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksum_mismatch_names_the_shard(store_dir):
    flip_bytes(store_dir / "shard_000001.safetensors")
    store = ActivationStore(store_dir)
    with pytest.raises(StoreError, match=r"shard_000001\.safetensors.*sha256.*delete"):
        store.load_all()
    with pytest.raises(StoreError, match=r"shard_000001"):
        list(store.iter_batches(16, buffer_tokens=64))
    with pytest.raises(StoreError, match=r"shard_000001"):
        ActivationStore(store_dir).verify_all()
    with pytest.raises(StoreError, match=r"shard_000001"):
        ActivationStore(store_dir, verify="all")
    with pytest.raises(StoreError, match=r"shard_000001"):
        ActivationStore(store_dir, verify=False).verify_all()     # an explicit check always hashes
    # the hash check is what caught it: without it the flipped bytes load silently
    acts, ids = ActivationStore(store_dir, verify=False).load_all(with_token_ids=True)
    assert not (torch.equal(acts, reference(60)[0]) and torch.equal(ids, reference(60)[1]))


def test_missing_store_and_missing_manifest(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        ActivationStore(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="manifest.json"):
        ActivationStore(tmp_path / "empty")


def test_missing_shard_is_reported_then_recaptured(store_dir):
    (store_dir / "shard_000002.safetensors").unlink()
    with pytest.raises(StoreError, match="shard_000002.*missing"):
        ActivationStore(store_dir)
    with pytest.warns(UserWarning, match="resumes from row"):
        writer = ActivationWriter(store_dir, META, D_IN, shard_tokens=40)
    assert writer.rows_done == writer.manifest["shards"][-1]["rows_end"] and not writer.complete
    capture(writer, 60)
    writer.close()
    assert torch.equal(ActivationStore(store_dir).load_all(), reference(60)[0])


def test_nan_and_inf_are_rejected(tmp_path):
    writer = ActivationWriter(tmp_path / "s", META, D_IN, shard_tokens=40)
    capture(writer, 3)                                                 # add() call 1
    acts, ids = row_data(3)
    acts[1, 2] = float("nan")
    with pytest.raises(StoreError, match=r"add\(\) call 2 \(rows 3\.\.4\).*NaN"):
        writer.add(acts, ids, 1)
    acts[1, 2] = float("inf")
    with pytest.raises(StoreError, match=r"add\(\) call 3.*NaN/inf"):
        writer.add(acts, ids, 1)
    writer.add(*row_data(3), 1)                                        # the fixed batch is accepted
    writer.close()
    assert torch.equal(ActivationStore(tmp_path / "s").load_all(), reference(4)[0])


def test_float16_overflow_is_rejected(tmp_path):
    writer = ActivationWriter(tmp_path / "s", META, D_IN, dtype="float16")
    acts, ids = row_data(0)
    acts[0, 0] = 1e6
    with pytest.raises(StoreError, match="overflow float16"):
        writer.add(acts, ids, 1)
    writer.close()


def test_bad_shapes_are_rejected(tmp_path):
    writer = ActivationWriter(tmp_path / "s", META, D_IN)
    with pytest.raises(StoreError, match="acts must be"):
        writer.add(torch.zeros(3, D_IN + 1), torch.arange(3), 1)
    with pytest.raises(StoreError, match="token_ids must"):
        writer.add(torch.zeros(3, D_IN), torch.arange(4), 1)
    with pytest.raises(StoreError, match="rows_finished"):
        writer.add(torch.zeros(3, D_IN), torch.arange(3), -1)
    writer.close()


# ---------------------------------------------------------------- reuse and resume

def test_different_meta_is_refused(store_dir):
    with pytest.raises(StoreError, match="another capture.*another dir or delete"):
        ActivationWriter(store_dir, {**META, "hook_name": "blocks.1.hook_resid_post"}, D_IN)
    with pytest.raises(StoreError, match="another capture"):
        ActivationWriter(store_dir, META, D_IN + 1)
    with pytest.raises(StoreError, match="another capture"):
        ActivationWriter(store_dir, META, D_IN, dtype="float16")


def test_same_meta_on_complete_store_resumes_as_done(store_dir):
    writer = ActivationWriter(store_dir, dict(META), D_IN)
    assert writer.complete and writer.rows_done == 60
    with pytest.raises(StoreError, match="already complete"):
        writer.add(*row_data(60), 1)
    writer.close()


def test_foreign_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        ActivationWriter(tmp_path, META, D_IN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_second_writer_on_same_dir_is_refused(tmp_path):
    first = ActivationWriter(tmp_path / "s", META, D_IN)
    with pytest.raises(StoreError, match="another ActivationWriter"):
        ActivationWriter(tmp_path / "s", META, D_IN)
    first.close()
    ActivationWriter(tmp_path / "s", META, D_IN).close()     # free again after close


def test_resume_after_dropping_the_writer(tmp_path):
    root = tmp_path / "s"
    writer = ActivationWriter(root, META, D_IN, shard_tokens=40)
    capture(writer, 35)
    while True:                         # make sure some rows are only in the writer's buffer
        writer.drain()
        if writer.rows_submitted > writer.rows_done:
            break
        capture(writer, writer.rows_submitted + 1, start=writer.rows_submitted)
    submitted, durable = writer.rows_submitted, writer.rows_done
    del writer                          # no close(): buffered rows are lost, as in a crash
    gc.collect()
    writer = ActivationWriter(root, META, D_IN, shard_tokens=40)
    assert writer.rows_done == durable == writer.manifest["shards"][-1]["rows_end"]
    assert 0 < durable < submitted and not writer.complete
    capture(writer, 60)
    writer.close()
    resumed = ActivationStore(root)
    uninterrupted = ActivationStore(write_store(tmp_path / "ref"))
    assert resumed.n_tokens == uninterrupted.n_tokens and resumed.manifest["rows_done"] == 60
    assert torch.equal(resumed.load_all(with_token_ids=True)[1], uninterrupted.load_all(with_token_ids=True)[1])
    assert torch.equal(resumed.load_all(), uninterrupted.load_all())


def test_close_incomplete_keeps_only_whole_rows(tmp_path):
    root = tmp_path / "s"
    writer = ActivationWriter(root, META, D_IN, shard_tokens=1000)
    capture(writer, 10)
    acts, ids = row_data(10)
    writer.add(acts[:2], ids[:2], 0, ends_row=False)      # first half of row 10
    writer.close(complete=False)
    store = ActivationStore(root)
    assert not store.complete and store.manifest["rows_done"] == 10
    assert torch.equal(store.load_all(), reference(10)[0])
    writer = ActivationWriter(root, META, D_IN)
    capture(writer, 12)
    writer.close()
    assert torch.equal(ActivationStore(root).load_all(), reference(12)[0])


def test_exception_in_with_block_leaves_store_resumable(tmp_path):
    root = tmp_path / "s"
    with pytest.raises(RuntimeError):
        with ActivationWriter(root, META, D_IN, shard_tokens=40) as writer:
            capture(writer, 20)
            raise RuntimeError("capture crashed")
    store = ActivationStore(root)
    assert not store.complete and store.manifest["rows_done"] == 20


KILLED_WRITER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from test_store import ActivationWriter, META, D_IN, capture
    real_replace = os.replace
    def slow_replace(src, dst):         # widen the window between temp file and rename,
        time.sleep(0.01)                # so the kill often lands in the middle of a write
        real_replace(src, dst)
    os.replace = slow_replace
    writer = ActivationWriter({root!r}, META, D_IN, shard_tokens=40)
    while True:                         # rows forever, at a pace that lets the parent strike mid-way
        capture(writer, writer.rows_submitted + 3, start=writer.rows_submitted)
        time.sleep(0.002)
""")


def test_sigkill_mid_capture_then_resume(tmp_path):
    root = tmp_path / "s"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER.format(tests=str(REPO / "tests"), root=str(root)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            manifest = root / "manifest.json"
            if manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 3:
                break
            assert proc.poll() is None, "writer subprocess died on its own"
            time.sleep(0.01)
        else:
            pytest.fail("writer subprocess wrote no shards in 20 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = ActivationStore(root)           # valid as left by the kill: every listed shard verifies
    killed.verify_all()
    assert not killed.complete
    writer = ActivationWriter(root, META, D_IN, shard_tokens=40)
    done = writer.rows_done
    assert done == killed.manifest["rows_done"] > 0
    assert not any(p.name.endswith(".tmp") for p in root.iterdir())
    n_rows = done + 50
    capture(writer, n_rows)
    writer.close()
    store = ActivationStore(root)
    store.verify_all()
    assert store.complete and store.manifest["rows_done"] == n_rows
    acts, ids = store.load_all(with_token_ids=True)
    ref_acts, ref_ids = reference(n_rows)
    assert torch.equal(ids, ref_ids) and torch.equal(acts, ref_acts)


# ---------------------------------------------------------------- split

def ids_of(view) -> set[int]:
    return set(view.load_all(with_token_ids=True)[1].tolist())


@pytest.mark.parametrize("fraction", [0.1, 0.5])          # few shards (tail cut) / many (whole shards)
def test_split_has_no_overlap(store_dir, fraction):
    store = ActivationStore(store_dir)
    train, evals = store.split(fraction)
    a, b = ids_of(train), ids_of(evals)
    assert not a & b
    assert a | b == set(reference(60)[1].tolist())
    assert train.n_tokens + evals.n_tokens == store.n_tokens
    assert abs(evals.n_tokens / store.n_tokens - fraction) < 0.25 * fraction + 0.05
    again = store.split(fraction)
    assert again[0].segments == train.segments and again[1].segments == evals.segments
    # views stream like the store
    assert sum(len(x) for x in evals.iter_batches(16, buffer_tokens=64)) == evals.n_tokens


def test_whole_shard_split_uses_separate_files(tmp_path):
    store = ActivationStore(write_store(tmp_path / "s", n_rows=300, shard_tokens=50))
    train, evals = store.split(0.2)
    assert not set(train.shard_paths()) & set(evals.shard_paths())
    assert len(evals.shard_paths()) >= 2


def test_split_of_a_view(store_dir):
    train, evals = ActivationStore(store_dir).split(0.5)
    t2, e2 = train.split(0.3)
    assert not ids_of(t2) & ids_of(e2) and not (ids_of(t2) | ids_of(e2)) & ids_of(evals)


def test_split_rejects_bad_fraction(store_dir):
    with pytest.raises(StoreError, match="eval_fraction"):
        ActivationStore(store_dir).split(1.0)


def test_kill_before_first_manifest_does_not_block_the_dir(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    (root / "manifest.json.tmp").write_text('{"half": ')     # what a kill inside the first write leaves
    write_store(root)
    assert torch.equal(ActivationStore(root).load_all(), reference(60)[0])


def test_write_failure_surfaces_and_keeps_the_store_valid(tmp_path, monkeypatch):
    import sae.activations.store as store_module
    root = tmp_path / "s"
    writer = ActivationWriter(root, META, D_IN, shard_tokens=40)
    capture(writer, 20)
    writer.drain()
    durable = writer.rows_done
    assert durable > 0

    def disk_full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(store_module, "_shard_bytes", disk_full)
    with pytest.raises(StoreError, match="No space left.*resume"):
        capture(writer, 60)
        writer.drain()
    writer.abort()
    monkeypatch.undo()
    assert ActivationStore(root).manifest["rows_done"] == durable
    writer = ActivationWriter(root, META, D_IN, shard_tokens=40)
    capture(writer, 60)
    writer.close()
    assert torch.equal(ActivationStore(root).load_all(), reference(60)[0])
