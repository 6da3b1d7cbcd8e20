"""Training checkpoints: safetensors for tensors, JSON for the rest; never pickle.

A checkpoint is a directory written under a temporary name and renamed into place, so a kill
mid-write leaves the previous checkpoint intact. It records the config fingerprint: resuming
from a checkpoint of another configuration is refused instead of silently mixing runs.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or from another configuration; the message says what to do."""


def _optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict, dict]:
    tensors, scalars = {}, {}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            slot = f"{names[id(param)]}.{key}"
            if torch.is_tensor(value) and value.ndim > 0:
                tensors[slot] = value.detach().contiguous().cpu()
            else:
                scalars[slot] = float(value)
    return tensors, scalars


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_tensors: dict[str, torch.Tensor], state: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = {id(p): n for n, p in model.named_parameters()}
    opt_tensors, opt_scalars = _optimizer_tensors(optimizer, names)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    save_file(opt_tensors or {"_empty": torch.zeros(0)}, tmp / "optimizer.safetensors")
    save_file({k: v.contiguous().cpu() for k, v in trainer_tensors.items()}, tmp / "trainer.safetensors")
    (tmp / "state.json").write_text(json.dumps(state | {"optimizer_scalars": opt_scalars}, indent=1))
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def find_checkpoint(path: Path) -> Path | None:
    """The latest complete checkpoint, also after a kill between the two renames above."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / "state.json").exists():
            return candidate
    return None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    fingerprint: str) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        state = json.loads((path / "state.json").read_text())
        model_tensors = load_file(path / "model.safetensors")
        opt_tensors = load_file(path / "optimizer.safetensors")
        trainer_tensors = load_file(path / "trainer.safetensors")
    except (OSError, json.JSONDecodeError, SafetensorError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt ({type(err).__name__}); delete it to restart training") from None
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(f"checkpoint {path} comes from another config (fingerprint {state.get('fingerprint')} != "
                              f"{fingerprint}); use another run name or delete the checkpoint")
    model.load_state_dict(model_tensors)
    params = dict(model.named_parameters())
    scalars = state.pop("optimizer_scalars", {})
    for slot in set(opt_tensors) | set(scalars):
        if slot == "_empty":
            continue
        name, key = slot.rsplit(".", 1)
        value = opt_tensors[slot] if slot in opt_tensors else torch.tensor(scalars[slot])
        optimizer.state[params[name]][key] = value.to(params[name].device)
    return trainer_tensors, state
