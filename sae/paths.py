"""Where generated, git-ignored data lives (converted models, corpora, activation stores)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """$SAE_CACHE_DIR, else .cache/ in the checkout (git-ignored), else ~/.cache/superposition-lab."""
    if env := os.environ.get("SAE_CACHE_DIR"):
        path = Path(env)
    elif (REPO_ROOT / "pyproject.toml").exists():
        path = REPO_ROOT / ".cache"
    else:
        path = Path.home() / ".cache" / "superposition-lab"
    path.mkdir(parents=True, exist_ok=True)
    return path
