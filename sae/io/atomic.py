"""Crash-safe writes: a reader sees the old file/directory or the new one, never half of one.

Write to a temporary sibling, fsync it, rename it into place (atomic on POSIX), fsync the
parent directory so the rename itself survives a power loss.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, tmp_suffix: str = ".tmp") -> None:
    tmp = path.with_name(path.name + tmp_suffix)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def previous_version(path: Path) -> Path:
    """Where write_dir_atomically parks the old directory while swapping in the new one."""
    return path.with_name(path.name + ".old")


def write_dir_atomically(path: Path, tensor_files: dict[str, dict[str, Tensor]], json_files: dict[str, object]) -> None:
    """Write a directory of safetensors + JSON files, then swap it in for `path`.

    rename() cannot replace a non-empty directory, so the old one is first moved to
    `previous_version(path)`; a kill between the two renames leaves it there, intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, tensors in tensor_files.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / name))
        for name, data in json_files.items():
            (tmp / name).write_text(json.dumps(data, indent=2, default=str))  # Paths etc. as text
        for file in tmp.iterdir():  # durable before it becomes visible
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        old = previous_version(path)
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
