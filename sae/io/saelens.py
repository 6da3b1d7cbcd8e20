"""Save and load SAEs in SAELens's v6 on-disk layout, so the ecosystem can read ours and we can
read theirs.

    <dir>/cfg.json                 d_in, d_sae, dtype, architecture (SAELens's name),
                                   apply_b_dec_to_input, normalize_activations, metadata{...},
                                   + "superposition_lab": {architecture, hyperparams, act_scale}
    <dir>/sae_weights.safetensors  W_enc[d_in,d_sae], b_enc, W_dec[d_sae,d_in], b_dec
                                   (+ threshold for jumprelu; gated: b_gate, r_mag, b_mag)
    <dir>/sparsity.safetensors     sparsity[d_sae] = log10 firing frequency (optional)

The training-time input scale s (act_scale) is folded into the weights, so SAELens sees a plain
SAE on raw activations:  W_enc*s, b_dec/s, W_dec/s  (pre-activations, hence thresholds, are
unchanged). Our own key lets load_sae rebuild the exact class and unfold s again. SAELens ignores
unknown top-level keys. Only JSON and safetensors are read or written: never pickle.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from sae.io.atomic import write_dir_atomically

from sae.nn import ARCHITECTURES, JumpReLUSAE, ReluSAE, SparseAutoencoder, TopKSAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"
OUR_KEY = "superposition_lab"
FORMAT_VERSION = 1
# Written as metadata.sae_lens_version: SAELens treats configs without it as pre-6.0 and rewrites them.
SAELENS_LAYOUT_VERSION = "6.0.0"
REQUIRED_METADATA = ("model_name", "hook_name", "context_size", "prepend_bos", "exclude_special_tokens")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
# What a plain SAELens export becomes here, when it carries no key of ours.
FOREIGN = {"standard": ReluSAE, "topk": TopKSAE, "jumprelu": JumpReLUSAE}


# -- save ------------------------------------------------------------------------------------------------
def save_sae(sae: SparseAutoencoder, path: str | Path, metadata: dict, sparsity: Tensor | None = None) -> Path:
    """Write `sae` to directory `path` (replaced atomically if it exists). `metadata` needs at least
    model_name, hook_name, context_size, prepend_bos, exclude_special_tokens; `sparsity` is the
    log10 firing frequency per latent (sae.metrics.sparsity_log10), or None."""
    path = Path(path)
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"SAE metadata lacks {missing}: pass them in save_sae(..., metadata={{...}})")
    sae.check_exportable()
    tensors = {name: t.detach().cpu().contiguous() for name, t in fold_act_scale(sae).items()}
    files = {WEIGHTS_FILE: tensors}
    if sparsity is not None:
        files[SPARSITY_FILE] = {"sparsity": check_sparsity(sparsity, sae.d_sae)}
    cfg = saelens_cfg(sae, metadata)
    write_dir_atomically(path, files, {CFG_FILE: cfg})
    return path


def saelens_cfg(sae: SparseAutoencoder, metadata: dict) -> dict:
    dtype = str(sae.W_enc.dtype).removeprefix("torch.")
    return {
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": dtype,
        "device": "cpu",
        "architecture": sae.saelens_architecture,
        "apply_b_dec_to_input": bool(sae.apply_b_dec_to_input),
        "normalize_activations": "none",  # act_scale is folded into the weights
        "reshape_activations": "none",
        **sae.saelens_config(),
        "metadata": {"sae_lens_version": SAELENS_LAYOUT_VERSION, "sae_lens_training_version": None,
                     "training_architecture": sae.architecture, **metadata},
        OUR_KEY: {"format_version": FORMAT_VERSION, "architecture": sae.architecture,
                  "hyperparams": sae.hyperparams(), "act_scale": float(sae.act_scale)},
    }


@torch.no_grad()
def fold_act_scale(sae: SparseAutoencoder) -> dict[str, Tensor]:
    """SAELens tensors on raw activations: the SAE saw x*s, so (x - b_dec/s) @ (W_enc*s) gives the same
    pre-activations, and (f @ W_dec + b_dec)/s the raw reconstruction."""
    s = float(sae.act_scale)
    tensors = dict(sae.saelens_tensors())
    tensors["W_enc"] = tensors["W_enc"] * s
    tensors["W_dec"] = tensors["W_dec"] / s
    tensors["b_dec"] = tensors["b_dec"] / s
    return tensors


def check_sparsity(sparsity: Tensor, d_sae: int) -> Tensor:
    sparsity = sparsity.detach().float().cpu().contiguous()
    if sparsity.shape != (d_sae,):
        raise ValueError(f"sparsity has shape {tuple(sparsity.shape)}, expected ({d_sae},): one value per latent")
    if (sparsity > 0).any() or sparsity.isnan().any():
        raise ValueError("sparsity must be log10 firing frequencies (<= 0); got values > 0 or NaN: "
                         "pass sae.metrics.sparsity_log10(firing_frequency)")
    return sparsity


# -- load ------------------------------------------------------------------------------------------------
def load_sae(path: str | Path) -> SparseAutoencoder:
    """Load an SAE written by save_sae (exact class, hyperparameters and act_scale restored), or a plain
    SAELens standard / topk / jumprelu export (as ReluSAE / TopKSAE / JumpReLUSAE with act_scale 1)."""
    path = Path(path)
    cfg = read_cfg(path)
    ours = cfg.get(OUR_KEY)
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    dtype = DTYPES.get(str(cfg.get("dtype", "float32")).removeprefix("torch."))
    if dtype is None:
        raise ValueError(f"{path / CFG_FILE}: dtype {cfg.get('dtype')!r} is not one of {sorted(DTYPES)}")
    if ours is not None:
        sae = build_ours(path, ours, d_in, d_sae, dtype)
    else:
        sae = build_foreign(path, cfg, d_in, d_sae, dtype)
    sae.apply_b_dec_to_input = bool(cfg.get("apply_b_dec_to_input", True))
    tensors = read_tensors(path / WEIGHTS_FILE)
    if ours is None:
        tensors = fold_decoder_norm_if_needed(cfg, tensors)
    check_tensors(path, sae, tensors)
    s = float(ours.get("act_scale", 1.0)) if ours is not None else 1.0
    unfold_act_scale(sae, tensors, s)
    return sae


def read_cfg(path: Path) -> dict:
    if not path.is_dir():
        raise FileNotFoundError(f"no SAE directory at {path}: pass the folder save_sae (or SAELens) wrote")
    cfg_file = path / CFG_FILE
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} is missing: {path} is not an SAE export (re-run the export)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_file} is not valid JSON ({e}): the export is corrupt, re-run it") from None
    missing = [k for k in ("d_in", "d_sae", "architecture") if k not in cfg]
    if not isinstance(cfg, dict) or missing:
        raise ValueError(f"{cfg_file} lacks {missing or 'a JSON object'}: not an SAELens cfg.json, re-run the export")
    return cfg


def read_sparsity(path: str | Path) -> Tensor | None:
    """The saved log10 firing frequencies, or None when the export has none."""
    file = Path(path) / SPARSITY_FILE
    return read_tensors(file)["sparsity"] if file.is_file() else None


def build_ours(path: Path, ours: dict, d_in: int, d_sae: int, dtype: torch.dtype) -> SparseAutoencoder:
    arch = ours.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path / CFG_FILE}: unknown architecture {arch!r}; this version knows {sorted(ARCHITECTURES)} "
                         "(upgrade superposition-lab to load it)")
    try:
        return ARCHITECTURES[arch](d_in, d_sae, dtype=dtype, **ours.get("hyperparams", {}))
    except TypeError as e:
        raise ValueError(f"{path / CFG_FILE}: hyperparams do not fit architecture {arch!r} ({e}); "
                         "the export comes from another version, re-export it") from None


def build_foreign(path: Path, cfg: dict, d_in: int, d_sae: int, dtype: torch.dtype) -> SparseAutoencoder:
    arch = cfg["architecture"]
    if arch not in FOREIGN:
        raise ValueError(f"{path / CFG_FILE}: SAELens architecture {arch!r} cannot be loaded here; "
                         f"supported: {sorted(FOREIGN)} (or exports written by save_sae)")
    if cfg.get("normalize_activations", "none") not in ("none", None):
        raise ValueError(f"{path / CFG_FILE}: normalize_activations={cfg['normalize_activations']!r} is not supported; "
                         "fold the normalisation into the weights in SAELens before saving")
    if arch == "topk":
        return TopKSAE(d_in, d_sae, k=int(cfg.get("k", 100)), dtype=dtype)
    return FOREIGN[arch](d_in, d_sae, dtype=dtype)


def read_tensors(file: Path) -> dict[str, Tensor]:
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: the export is incomplete, re-run it")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{file} is not a readable safetensors file ({str(e).splitlines()[0]}): "
                         "the export is corrupt, re-run it") from None


def fold_decoder_norm_if_needed(cfg: dict, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """SAELens topk with rescale_acts_by_decoder_norm scales pre-activations by ||W_dec_i||; folding
    that norm into the encoder (as SAELens's fold_W_dec_norm does) gives the same outputs."""
    if cfg["architecture"] != "topk" or not cfg.get("rescale_acts_by_decoder_norm", False):
        return tensors
    norms = tensors["W_dec"].norm(dim=1).clamp_min(1e-8)
    return {**tensors, "W_enc": tensors["W_enc"] * norms, "b_enc": tensors["b_enc"] * norms,
            "W_dec": tensors["W_dec"] / norms[:, None]}


def check_tensors(path: Path, sae: SparseAutoencoder, tensors: dict[str, Tensor]) -> None:
    expected = {name: tuple(t.shape) for name, t in sae.saelens_tensors().items()}
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"{path / WEIGHTS_FILE} lacks tensors {missing} needed by {sae.architecture!r}: "
                         "the export is incomplete or of another architecture, re-export it")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{path / WEIGHTS_FILE}: {name} has shape {tuple(tensors[name].shape)}, cfg.json "
                             f"(d_in={sae.d_in}, d_sae={sae.d_sae}) implies {shape}; fix cfg.json or re-export")


@torch.no_grad()
def unfold_act_scale(sae: SparseAutoencoder, tensors: dict[str, Tensor], s: float) -> None:
    """Inverse of fold_act_scale: back to the scaled space the SAE was trained in."""
    tensors = {name: t.to(torch.float32 if name == "threshold" else t.dtype) for name, t in tensors.items()}
    tensors["W_enc"] = tensors["W_enc"] / s
    tensors["W_dec"] = tensors["W_dec"] * s
    tensors["b_dec"] = tensors["b_dec"] * s
    sae.load_saelens_tensors(tensors)
    sae.act_scale.fill_(s)
