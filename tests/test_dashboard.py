"""The static dashboard, rendered by a real headless Chromium (file:// URL, JS executed)."""
from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess

import pytest

from sae.viz.dashboard import dashboard_data, find_chromium, render_html, rendered_dom, screenshot, write_dashboard


def ensure_chromium() -> str:
    """Chromium, installed with apt when missing (what scripts/setup.sh does); skip if impossible."""
    found = find_chromium()
    if found is None and shutil.which("apt-get"):
        try:
            subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                           shell=True, check=True, capture_output=True, timeout=900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, PermissionError) as err:
            pytest.skip(f"Chromium is not installed and apt-get could not install it ({type(err).__name__}); "
                        "run scripts/setup.sh as root or install chromium")
        found = find_chromium()
    if found is None:
        pytest.skip("Chromium is not installed and there is no apt-get to install it; install chromium")
    return found


@pytest.fixture(scope="module")
def dashboard(smol, tiny_run, tmp_path_factory):
    from sae.analysis.feature_inspection import InspectionSettings, inspect_units
    from sae.analysis.logit_effects import model_logit_effects, raw_decoder_directions
    from sae.analysis.units import sae_features
    from sae.data.tokens import corpus_rows, special_token_ids
    from sae.io.saelens import load_sae
    cfg, _ = tiny_run
    sae = load_sae(cfg.run_dir / "sae")
    rows = corpus_rows("shakespeare", smol.tokenizer, 48, 8)
    report = inspect_units(smol, rows, [sae_features(sae, cfg.model.hook)], special_token_ids(smol.tokenizer),
                           InspectionSettings(top_k=6), batch_size=4)["sae_features"]
    logits = model_logit_effects(smol, raw_decoder_directions(sae), k=6, progress=False)
    meta = {"model": "smollm2-135m", "hook": cfg.model.hook, "d_sae": sae.d_sae}
    path = write_dashboard(tmp_path_factory.mktemp("dash") / "index.html", report, smol.tokenizer, logits, meta)
    return path, report, dashboard_data(report, smol.tokenizer, logits, meta)


def test_page_embeds_its_data_safely(dashboard):
    path, report, data = dashboard
    text = path.read_text()
    payload = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', text, re.S).group(1)
    assert json.loads(payload)["meta"]["n_alive"] == int((report.fire_count > 0).sum())
    assert "http://" not in text and "https://" not in text          # nothing fetched: works offline
    tricky = {"meta": {"title": "</script><b>x"}, "vocab": {"1": "</script>"}, "features": []}
    page = render_html(tricky)
    assert page.count("</script>") == 2                                # only the page's own two closing tags


def test_chromium_renders_list_and_feature_contexts(dashboard):
    ensure_chromium()
    path, report, data = dashboard
    feature = max(data["features"], key=lambda f: len(f["contexts"]))
    dom = rendered_dom(path, feature=feature["id"])
    rows = re.findall(r'<tr class="feature-row[^"]*" data-id="(\d+)"', dom)
    assert len(rows) == min(len(data["features"]), 300)              # the list rendered from the inline JSON
    assert f'data-feature="{feature["id"]}"' in dom                   # #feature=N opened that feature
    contexts = dom.split('id="contexts"')[1].split('id="samples"')[0]
    assert contexts.count('class="context"') == len(feature["contexts"])
    center = feature["contexts"][0]["tokens"][feature["contexts"][0]["center"]]
    shown = data["vocab"][str(center)].replace("\n", "⏎")
    assert 'class="tok center"' in contexts and shown in html_lib.unescape(contexts)   # the activating token is there
    assert "promoted tokens" in dom and "<svg" in dom


def test_chromium_unknown_feature_and_screenshot(dashboard, tmp_path):
    ensure_chromium()
    path, report, data = dashboard
    dom = rendered_dom(path, feature=10 ** 7)
    assert "is not in this dashboard" in dom
    png = screenshot(path, tmp_path / "shot.png", feature=data["features"][0]["id"])
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width, height) == (1280, 900)


def test_chromium_search_filters_the_list(dashboard):
    ensure_chromium()
    path, report, data = dashboard
    word = data["vocab"][str(data["features"][0]["top_tokens"][0][0])].strip().lower() or "the"
    expected = [f["id"] for f in data["features"] if str(f["id"]) == word
                or any(word in data["vocab"][str(i)].lower() for i, _ in f["top_tokens"])]
    dom = rendered_dom(path, search=word)
    listed = [int(i) for i in re.findall(r'<tr class="feature-row[^"]*" data-id="(\d+)"', dom)]
    assert sorted(listed) == sorted(expected[:300]) or (len(expected) > 300 and len(listed) == 300)
    assert 0 < len(listed) <= len(data["features"])
