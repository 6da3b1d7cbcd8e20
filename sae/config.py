"""Typed run configuration: YAML file -> pydantic models, with `section.key=value` overrides.

Every section forbids unknown keys, so a typo fails loudly with the list of valid keys instead of
being silently ignored.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the fix."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = "smollm2-135m"              # zoo key, local HF dir, or hub id (network only)
    hook: str = "blocks.6.hook_resid_post"
    device: str | None = None               # None: cuda when available, else cpu


class DataConfig(Section):
    corpus: str = "shakespeare"             # built-in name or path to .txt/.jsonl file/dir
    context_size: int = Field(128, ge=8)
    train_tokens: int = Field(250_000, ge=1)  # approximate: whole rows are captured
    eval_tokens: int = Field(32_768, ge=1)    # held-out rows, never seen in training
    prepend_bos: bool = True
    exclude_special_tokens: bool = True     # BOS is an attention sink with ~100x the norm
    capture_batch_size: int = Field(16, ge=1)
    shard_tokens: int = Field(65_536, ge=1)


class SAEConfig(Section):
    architecture: str = "topk"
    expansion_factor: int = Field(8, ge=1)  # d_sae = expansion_factor * d_in, unless d_sae is given
    d_sae: int | None = Field(None, ge=1)
    hyperparams: dict[str, Any] = Field(default_factory=dict)  # passed to the architecture class


class TrainConfig(Section):
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(1e-3, gt=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_warmup_steps: int = Field(50, ge=0)
    lr_decay_fraction: float = Field(0.2, ge=0, le=1)  # linear decay to 0 over this final part
    epochs: int = Field(1, ge=1)
    shuffle_buffer_tokens: int = Field(131_072, ge=1)
    dead_window_tokens: int = Field(100_000, ge=1)  # a latent silent this long counts as dead
    resample_dead_every: int = Field(0, ge=0)       # steps between Anthropic-style resamplings; 0 = off
    checkpoint_every: int = Field(100, ge=1)        # steps
    log_every: int = Field(10, ge=1)
    seed: int = 0


class EvalConfig(Section):
    batch_size: int = Field(8, ge=1)        # rows per forward pass
    downstream_tokens: int = Field(4_096, ge=0)  # CE/KL with the SAE spliced in, on the first eval rows (0: off)


class RunConfig(Section):
    name: str = "default"
    output_dir: str = "results"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sae: SAEConfig = Field(default_factory=SAEConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _eval_fits(self):
        if self.data.eval_tokens < self.data.context_size:
            raise ValueError("data.eval_tokens must hold at least one row (>= data.context_size)")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def fingerprint(self, *sections: str) -> str:
        """Hash of the named sections; a checkpoint or store is only reused when it matches."""
        dump = self.model_dump(mode="json")
        return fingerprint({s: dump[s] for s in (sections or dump.keys())})


def fingerprint(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _format_error(err: ValidationError, cls: type[BaseModel]) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        section = key.rsplit(".", 1)[0] if "." in key else ""
        where, valid = _section_model(cls, section)
        return f"unknown config key {key!r} for {where}; valid keys: {', '.join(valid)}"
    return f"invalid config value for {key!r}: {first['msg']}"


def _section_model(cls: type[BaseModel], section: str) -> tuple[str, list[str]]:
    """(name of the model that holds `section`, its keys), following nested sections."""
    model = cls
    for part in filter(None, section.split(".")):
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return section, []
        model = annotation
    return model.__name__, list(model.model_fields)


def apply_override(data: dict, override: str) -> None:
    """`train.lr=3e-4` -> data["train"]["lr"] = 3e-4 (value parsed as YAML)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.key=value, e.g. train.lr=3e-4")
    key, raw = override.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else None
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[leaf] = value


def load_yaml_config(cls: type[BaseModel], path: str | Path | None = None, overrides: list[str] = ()) -> BaseModel:
    """Any pydantic config model from a YAML file plus `key.path=value` overrides; ConfigError on bad input."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} not found; pass an existing YAML file such as configs/default.yaml")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    for override in overrides:
        apply_override(data, override)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, cls)) from None


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    return load_yaml_config(RunConfig, path, overrides)


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
