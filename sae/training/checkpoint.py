"""Training checkpoints: safetensors for tensors, JSON for the rest; never pickle.

A checkpoint is a directory written under a temporary name and renamed into place, so a kill
mid-write leaves the previous checkpoint intact. It records the config fingerprint: resuming
from a checkpoint of another configuration is refused instead of silently mixing runs.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from sae.io.atomic import previous_version, write_dir_atomically


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
    names = {id(p): n for n, p in model.named_parameters()}
    opt_tensors, opt_scalars = _optimizer_tensors(optimizer, names)
    write_dir_atomically(Path(path), {
        "model.safetensors": model.state_dict(),
        "optimizer.safetensors": opt_tensors or {"_empty": torch.zeros(0)},
        "trainer.safetensors": trainer_tensors,
    }, {"state.json": state | {"optimizer_scalars": opt_scalars}})


def find_checkpoint(path: Path) -> Path | None:
    """The latest complete checkpoint, also after a kill between the two renames above."""
    path = Path(path)
    for candidate in (path, previous_version(path)):
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
