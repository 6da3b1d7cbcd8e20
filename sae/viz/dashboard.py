"""A static HTML dashboard per SAE: one self-contained file, data inline as JSON, vanilla JS.

Open it from disk (file://), no server. The sidebar lists features, searchable by id or top-token
text and sortable by density / max activation / id. A feature opens on click or via `#feature=N`
(`#search=text` pre-fills the search) and shows density, activation histogram, promoted /
suppressed tokens, top-activating contexts with per-token highlighting, and random firing
examples from low to high activation.
"""
from __future__ import annotations

import json
from pathlib import Path

from sae.analysis.feature_inspection import InspectionReport
from sae.analysis.feature_records import feature_records, token_strings, used_token_ids
from sae.analysis.logit_effects import LogitEffects

TEMPLATE = Path(__file__).with_name("dashboard_template.html")


def dashboard_data(report: InspectionReport, tokenizer, logits: LogitEffects | None = None, meta: dict | None = None,
                   include_dead: bool = False, max_features: int | None = None, records: list[dict] | None = None,
                   **record_kw) -> dict:
    """Everything the page needs. Dead features are left out by default (nothing to show); with
    max_features, the densest ones are kept. `records` (from feature_records) skips rebuilding them."""
    alive = (report.fire_count > 0).nonzero().squeeze(1)
    units = range(report.n_units) if include_dead else alive.tolist()
    if max_features is not None and len(units) > max_features:
        order = report.fire_count[list(units)].argsort(descending=True)[:max_features]
        units = sorted(list(units)[i] for i in order.tolist())
    if records is None:
        records = feature_records(report, logits, units, **record_kw)
    else:
        wanted = set(units)
        records = [r for r in records if r["id"] in wanted]
    meta = {"title": f"SAE dashboard: {report.name}", "model": "?", "hook": "?", "d_sae": report.n_units,
            **(meta or {}), "n_tokens": report.n_tokens, "n_alive": int(alive.numel()),
            "hist_edges": [round(e, 6) for e in report.settings.hist_edges().tolist()]}
    vocab = token_strings(tokenizer, used_token_ids(records))
    return {"meta": meta, "vocab": {str(k): v for k, v in vocab.items()}, "features": records}


def render_html(data: dict) -> str:
    # "</" inside inline JSON would close the <script> element early; "<\/" is the same JSON string.
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    title = data["meta"]["title"].replace("&", "&amp;").replace("<", "&lt;")
    return TEMPLATE.read_text().replace("__TITLE__", title).replace("__DATA__", payload)


def write_dashboard(path: str | Path, report: InspectionReport, tokenizer, logits: LogitEffects | None = None,
                    meta: dict | None = None, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_html(dashboard_data(report, tokenizer, logits, meta, **kw)), encoding="utf-8")
    tmp.replace(path)
    return path


# -- headless Chromium: render checks and screenshots (tests, experiments) ------------------------------
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def find_chromium() -> str | None:
    import shutil
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def run_chromium(url: str, *args: str, timeout: float = 120, budget_ms: int = 5000) -> str:
    """Load `url` in headless Chromium (JS runs for `budget_ms` of virtual time); returns stdout."""
    import subprocess
    import tempfile
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found: apt-get install -y chromium (scripts/setup.sh does it)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args, url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def page_url(html: str | Path, feature: int | None = None, search: str | None = None) -> str:
    from urllib.parse import urlencode
    params = {k: v for k, v in (("feature", feature), ("search", search)) if v is not None}
    return Path(html).resolve().as_uri() + (f"#{urlencode(params)}" if params else "")


def rendered_dom(html: str | Path, feature: int | None = None, search: str | None = None, **kw) -> str:
    """The page's DOM after its JavaScript ran, optionally with `#feature=N` opened / a search typed."""
    return run_chromium(page_url(html, feature, search), "--dump-dom", **kw)


def screenshot(html: str | Path, png: str | Path, feature: int | None = None, size: str = "1280,900", **kw) -> Path:
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    run_chromium(page_url(html, feature), f"--screenshot={png}", f"--window-size={size}", **kw)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot at {png}")
    return png
