"""Exact resume: a training process killed with SIGKILL and restarted ends bit-identical to one
that was never interrupted (weights, Adam state, RNG, data position and dead counters restored)."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("resume_worker.py")


def start_worker(store: Path, run: Path, arch: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.Popen([sys.executable, str(WORKER), str(store), str(run), arch],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]


def logged_steps(run: Path) -> int:
    log = run / "train_log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    return tmp_path_factory.mktemp("resume") / "store"


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_sigkill_then_resume_is_bit_identical(arch, synthetic_store, tmp_path):
    reference = tmp_path / "reference"
    finish(start_worker(synthetic_store, reference, arch))
    total = logged_steps(reference)

    interrupted = tmp_path / "interrupted"
    kill_at = random.Random(arch).randint(20, total - 60)
    proc = start_worker(synthetic_store, interrupted, arch)
    deadline = time.time() + 300
    while logged_steps(interrupted) < kill_at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "worker finished before it could be killed; make the run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (interrupted / "final.safetensors").exists()
    assert (interrupted / "checkpoints" / "latest" / "state.json").exists()
    resumed_from = json.loads((interrupted / "checkpoints" / "latest" / "state.json").read_text())["step"]
    assert 0 < resumed_from < total

    finish(start_worker(synthetic_store, interrupted, arch))
    want, got = load_file(reference / "final.safetensors"), load_file(interrupted / "final.safetensors")
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), f"{name} differs after resume"
    # the log was cut back to the checkpoint and continued: one line per step, no duplicates
    steps = [json.loads(l)["step"] for l in (interrupted / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(total))
