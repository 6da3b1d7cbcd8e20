"""Feature inspection, logit effects, polysemanticity, interference and exports.

Synthetic checks compare the streaming/vectorised code with brute force; the integration checks
run the real SmolLM2 and the session's tiny SAE (fixtures `smol`, `tiny_run`)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from sae.analysis.feature_inspection import InspectionReport, InspectionSettings, UnitCollector, inspect_units
from sae.analysis.interference import (CoActivation, encoder_decoder_alignment, interference_report, max_abs_cos,
                                       nearest_and_random_pairs, random_directions)
from sae.analysis.logit_effects import final_norm, logit_effects, model_logit_effects, raw_decoder_directions
from sae.analysis.polysemanticity import polysemanticity, score_units
from sae.analysis.token_classes import CLASSES, token_class, vocab_classes
from sae.analysis.units import mlp_neurons, residual_basis, sae_features
from sae.toy.geometry import welch_bound


# -- streaming inspection vs brute force ---------------------------------------------------------
def collect(acts, keep, settings, batch_rows=5):
    c = UnitCollector(acts.shape[2], settings)
    for r in range(0, acts.shape[0], batch_rows):
        c.update(acts[r:r + batch_rows], keep[r:r + batch_rows], r)
    R, T, _ = acts.shape
    return c.report("synthetic", torch.arange(R * T).view(R, T))


@pytest.fixture(scope="module")
def synthetic():
    gen = torch.Generator().manual_seed(0)
    R, T, F = 13, 11, 9
    acts = torch.relu(torch.randn(R, T, F, generator=gen) - 0.7)
    keep = torch.ones(R, T, dtype=torch.bool)
    keep[:, 0] = False
    keep[3, 5] = False                      # a special token mid-row
    acts = acts * keep[..., None]           # inspect_units leaves zeros at excluded positions
    acts[:, :, 8] = 0.0                     # a dead unit
    acts[2, 4, 7] = 5.0                     # a unit that fires exactly once
    acts[:, :, 7] = 0.0
    acts[2, 4, 7] = 5.0
    settings = InspectionSettings(top_k=6, n_samples=4, window_before=3, window_after=2, unit_chunk=4)
    return acts, keep, settings, collect(acts, keep, settings)


def test_running_topk_matches_brute_force(synthetic):
    acts, keep, settings, rep = synthetic
    flat = acts.reshape(-1, acts.shape[2])
    for unit in range(7):  # units with >= k firings
        values, index = flat[:, unit].topk(settings.top_k)
        assert torch.allclose(rep.top_values[unit], values)
        assert set(rep.top_index[unit].tolist()) == set(index.tolist())
    assert not rep.top_valid()[8].any() and rep.fire_count[8] == 0            # dead: no contexts
    assert rep.top_valid()[7].sum() == 1 and rep.top_values[7, 0] == 5.0      # one firing, rest empty


def test_context_windows_carry_the_units_activations(synthetic):
    acts, keep, settings, rep = synthetic
    T = acts.shape[1]
    for unit in range(7):
        for slot in range(settings.top_k):
            ids, window, center = rep.context(unit, slot)
            row, pos = divmod(int(rep.top_index[unit, slot]), T)
            assert ids[center] == row * T + pos                          # tokens are arange: id == position
            for offset, value in enumerate(window):
                p = pos - center + offset
                assert p >= 1                                            # BOS never shown
                expected = acts[row, p, unit].item() if keep[row, p] else math.nan
                assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def test_density_samples_and_histogram(synthetic):
    acts, keep, settings, rep = synthetic
    fired = (acts > 0) & keep[..., None]
    assert rep.n_tokens == int(keep.sum())
    assert torch.equal(rep.fire_count, fired.sum((0, 1)))
    assert torch.allclose(rep.act_sum, acts.sum((0, 1)).double())
    assert torch.equal(rep.hist_counts.sum(1), rep.fire_count)
    flat = acts.reshape(-1, acts.shape[2])
    for unit in range(9):
        samples = rep.samples_sorted(unit)
        assert len(samples) == min(settings.n_samples, int(rep.fire_count[unit]))
        for value, position in samples:                                   # real firing positions, right values
            assert value > 0 and flat[position, unit].item() == pytest.approx(value)
    edges = settings.hist_edges()
    b = int(torch.bucketize(torch.tensor(5.0), edges)) - 1
    assert rep.hist_counts[7, b] == 1 and edges[b] <= 5.0 < edges[b + 1]


def test_report_round_trips_through_safetensors(synthetic, tmp_path):
    *_, rep = synthetic
    back = InspectionReport.load(rep.save(tmp_path / "rep"))
    assert torch.equal(back.top_index, rep.top_index) and back.settings == rep.settings
    assert torch.allclose(back.top_windows.nan_to_num(-7), rep.top_windows.nan_to_num(-7))


# -- polysemanticity metrics ---------------------------------------------------------------------
def test_polysemanticity_scores_on_known_units():
    classes = torch.tensor([CLASSES.index(c) for c in ("digit", "digit", "punctuation", "word_start", "word_start")])
    ids = torch.tensor([[0, 0, 0, 0],      # one token type
                        [0, 2, 3, 4],      # four types, equal weight
                        [0, 1, 0, 1]])     # two types, both digits
    values = torch.ones(3, 4)
    entropy, n80, specificity = score_units(ids, values, classes)
    assert entropy.tolist() == pytest.approx([0.0, 2.0, 1.0])
    assert n80.tolist() == [1, 4, 2]
    assert specificity.tolist() == pytest.approx([1.0, 0.5, 1.0])
    # activation weighting: one dominant token makes a unit specific
    entropy, n80, _ = score_units(torch.tensor([[0, 2, 3, 4]]), torch.tensor([[97.0, 1, 1, 1]]), classes)
    assert entropy.item() < 0.3 and n80.item() == 1


def test_token_classes():
    assert [token_class(t) for t in ("\n", " 42", ",", " the", " Hamlet", " sword", "ing", " x2")] == \
        ["whitespace", "digit", "punctuation", "function_word", "capitalised", "word_start", "word_piece", "other"]


# -- interference ----------------------------------------------------------------------------------
def test_simplex_meets_the_welch_bound_and_random_does_not():
    d = 6
    simplex = torch.eye(d + 1) - 1.0 / (d + 1)               # d+1 unit vectors in a d-dim subspace
    report = interference_report(simplex)
    assert welch_bound(d + 1, d) == pytest.approx(1 / d)      # a regular simplex is a tight frame:
    assert report["coherence"] == pytest.approx(1 / d, abs=1e-5)   # every |cos| = 1/d, exactly the bound
    n, dim = 300, 20
    rand = interference_report(random_directions(n, dim))
    assert rand["max_abs_cos"]["min"] > welch_bound(n, dim)   # random directions are far from the bound
    assert interference_report(torch.eye(5))["coherence"] == pytest.approx(0.0, abs=1e-6)


def test_interference_on_a_toy_models_W():
    angles = torch.arange(5) * 2 * math.pi / 5
    W = torch.stack([angles.cos(), angles.sin()])             # toy W [m=2, n=5]: a pentagon
    W = torch.cat([W, torch.zeros(2, 1)], 1)                  # plus a dropped (zero) feature
    report = interference_report(W.T)
    assert report["n_directions"] == 5 and report["n_dropped_zero_norm"] == 1
    # |cos 144 deg| (second neighbours) beats |cos 72 deg|: coherence = cos(36 deg)
    assert report["coherence"] == pytest.approx(abs(math.cos(4 * math.pi / 5)), abs=1e-5)
    assert report["welch_bound"] == pytest.approx(welch_bound(5, 2))


def test_max_abs_cos_chunked_and_alignment():
    W = random_directions(50, 8, seed=3)
    best, arg = max_abs_cos(W, chunk=7)
    cos = (W @ W.T).abs().fill_diagonal_(-1)
    assert torch.allclose(best, cos.max(1).values) and torch.equal(arg, cos.argmax(1))
    assert torch.allclose(encoder_decoder_alignment(W.T * 3, W), torch.ones(50))
    pairs, pair_cos, nearest = nearest_and_random_pairs(W, 20)
    assert (pairs[:, 0] != pairs[:, 1]).all() and nearest.sum() == 50
    assert torch.allclose(pair_cos, (W[pairs[:, 0]] * W[pairs[:, 1]]).sum(1).abs(), atol=1e-6)


def test_coactivation_counts():
    fired = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1]], dtype=torch.bool)
    counter = CoActivation(torch.tensor([[0, 1], [0, 2], [1, 2]]), 3)
    counter.update(fired[:2])
    counter.update(fired[2:])
    assert counter.both.tolist() == [2, 1, 1]
    assert counter.conditional().tolist() == pytest.approx([1.0, 0.5, 0.5])


def test_logit_effects_match_dense_product():
    gen = torch.Generator().manual_seed(1)
    D, W_U, g = torch.randn(30, 8, generator=gen), torch.randn(8, 50, generator=gen), torch.rand(8, generator=gen)
    fx = logit_effects(D, W_U, g, k=4, chunk=7, progress=False)
    dense = (D * g) @ W_U
    assert torch.allclose(fx.top_values, dense.topk(4).values, atol=1e-5)
    assert torch.equal(fx.bottom_ids, dense.topk(4, largest=False).indices)
    centred = logit_effects(D, W_U, g, centre=True, k=4, progress=False)
    assert torch.allclose(centred.top_values, (((D - D.mean(1, keepdim=True)) * g) @ W_U).topk(4).values, atol=1e-5)


# -- the real model and the session's tiny SAE ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_inspection(smol, tiny_run):
    from sae.data.tokens import corpus_rows, special_token_ids
    from sae.io.saelens import load_sae
    cfg, _ = tiny_run
    sae = load_sae(cfg.run_dir / "sae")
    rows = corpus_rows("shakespeare", smol.tokenizer, 32, 6)
    hook = cfg.model.hook
    units = [sae_features(sae, hook), mlp_neurons(smol, 6), residual_basis(smol, hook)]
    reports = inspect_units(smol, rows, units, special_token_ids(smol.tokenizer), InspectionSettings(top_k=8), batch_size=3)
    return cfg, sae, rows, reports


def test_top_activations_match_a_fresh_forward_pass(smol, tiny_inspection):
    cfg, sae, rows, reports = tiny_inspection
    from sae.data.tokens import keep_mask, special_token_ids
    rep, T = reports["sae_features"], rows.shape[1]
    keep = keep_mask(rows, special_token_ids(smol.tokenizer), True)
    assert rep.n_tokens == int(keep.sum()) <= 6 * (T - 1)           # BOS (and separators) excluded
    assert rep.fire_count.sum() > 0
    assert keep.reshape(-1)[rep.top_index[rep.top_valid()]].all()   # never the attention sink / specials
    unit = int(rep.fire_count.argmax())
    row, pos = divmod(int(rep.top_index[unit, 0]), T)
    _, cache = smol.run_with_cache(rows[row:row + 1], names_filter=cfg.model.hook, stop_at_layer=7)
    kept_positions = keep[row].nonzero().squeeze(1)
    fresh = sae.encode(cache[cfg.model.hook][0, kept_positions])[:, unit]
    assert rep.top_values[unit, 0].item() == pytest.approx(fresh.max().item(), rel=1e-4)
    assert kept_positions[fresh.argmax()].item() == pos


def test_neuron_hook_is_the_down_projection_input(smol):
    assert "blocks.6.mlp.hook_post" in smol.hook_dict
    names = ("blocks.6.mlp.hook_post", "blocks.6.mlp.out.hook_in")
    _, cache = smol.run_with_cache(torch.tensor([[1, 504, 2231, 30]]), names_filter=lambda n: n in names, stop_at_layer=7)
    assert torch.equal(cache[names[0]], cache[names[1]]) and cache[names[0]].shape[-1] == smol.cfg.d_mlp


def test_polysemanticity_runs_on_all_unit_kinds(smol, tiny_inspection):
    *_, reports = tiny_inspection
    classes = vocab_classes(smol.tokenizer, int(smol.cfg.d_vocab))
    assert classes.shape[0] == smol.cfg.d_vocab and classes.max() < len(CLASSES)
    for name, rep in reports.items():
        summary = polysemanticity(rep, classes).summary()
        assert summary["n_scored"] > 0, name
        assert 0 <= summary["token_entropy_bits"]["median"] <= math.log2(8) + 1e-6


def test_logit_effects_through_smollm2s_final_rmsnorm(smol, tiny_inspection):
    _, sae, _, _ = tiny_inspection
    weight, centres = final_norm(smol)
    assert weight is not None and weight.shape == (smol.cfg.d_model,) and not centres
    directions = raw_decoder_directions(sae)[:16]
    fx = model_logit_effects(smol, directions, k=5, progress=False)
    dense = (directions * weight) @ smol.W_U.detach().float()
    assert torch.equal(fx.top_ids, dense.topk(5).indices)


def test_dictionary_and_neuronpedia_exports(smol, tiny_inspection, tmp_path):
    from sae.io.dictionary import read_feature_dictionary, write_feature_dictionary, write_neuronpedia
    cfg, sae, _, reports = tiny_inspection
    rep = reports["sae_features"]
    alive = (rep.fire_count > 0).nonzero().squeeze(1)[:40].tolist()
    fx = model_logit_effects(smol, raw_decoder_directions(sae), k=5, progress=False)
    path = write_feature_dictionary(tmp_path / "dict.jsonl", rep, smol.tokenizer, fx, cfg.run_dir / "sae", units=alive)
    lines = read_feature_dictionary(path)
    assert [line["id"] for line in lines] == alive
    first = lines[0]
    weights = load_file(first["decoder"]["file"])[first["decoder"]["tensor"]]
    assert torch.allclose(weights[first["decoder"]["row"]], raw_decoder_directions(sae)[first["id"]], atol=1e-5)
    assert first["examples"] and first["examples"][0]["value"] == pytest.approx(rep.top_values[first["id"], 0].item(), rel=1e-3)
    assert first["density"] == pytest.approx(rep.density()[first["id"]].item())
    np_dir = write_neuronpedia(tmp_path / "np", rep, smol.tokenizer, fx, "smollm2-135m", cfg.model.hook,
                               W_dec=sae.W_dec, units=alive)
    feature = json.loads((np_dir / "features" / f"{alive[0]}.json").read_text())
    assert {"modelId", "layer", "index", "pos_str", "neg_str", "frac_nonzero", "activations", "explanations",
            "freq_hist_data_bar_heights", "topkCosSimIndices"} <= set(feature)
    act = feature["activations"][0]
    assert act["values"][act["maxValueTokenIndex"]] == pytest.approx(act["maxValue"], rel=1e-3)
    assert alive[0] not in feature["topkCosSimIndices"]
    assert json.loads((np_dir / "source.json").read_text())["nFeaturesExported"] == len(alive)


def test_collector_scales_to_tens_of_thousands_of_units():
    """d_sae = 32768 with sparse (TopK-like) activations: bounded state, exact top-k, a few seconds."""
    import time
    F, T, k = 32768, 64, 8
    gen = torch.Generator().manual_seed(0)
    settings = InspectionSettings(top_k=k, n_samples=8)
    collector = UnitCollector(F, settings)
    keep = torch.ones(4, T, dtype=torch.bool)
    best = torch.zeros(F)
    start = time.time()
    for first_row in (0, 4):
        acts = torch.zeros(4 * T, F)
        top = torch.rand(4 * T, F, generator=gen).topk(32, dim=1)         # 32 active latents per token
        acts.scatter_(1, top.indices, top.values)
        best = torch.maximum(best, acts.max(0).values)
        collector.update(acts.view(4, T, F), keep, first_row)
    elapsed = time.time() - start
    report = collector.report("big", torch.zeros(8, T, dtype=torch.long))
    assert torch.equal(report.top_values[:, 0].clamp_min(0), best)
    assert report.top_windows.shape == (F, k, settings.window) and report.fire_count.sum() == 8 * T * 32
    assert elapsed < 60, f"{elapsed:.1f}s for 512 tokens x 32768 units"


def test_polysemanticity_from_random_samples(synthetic):
    *_, rep = synthetic
    classes = torch.zeros(int(rep.tokens.max()) + 1, dtype=torch.long)
    top, samples = polysemanticity(rep, classes, "top"), polysemanticity(rep, classes, "samples")
    assert top.top_k == 6 and samples.top_k == 4
    assert set(samples.unit_ids.tolist()) == {u for u in range(9) if rep.fire_count[u] >= 4}
    # tokens are arange here, so every sampled position is its own token type
    assert samples.token_entropy.max() <= 2.0 + 1e-6 and (samples.tokens_for_80pct >= 1).all()
    with pytest.raises(ValueError):
        polysemanticity(rep, classes, "everything")


def test_probability_less_matches_pairwise_count():
    from sae.analysis.polysemanticity import probability_less
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randint(0, 6, (40,), generator=gen).float(), torch.randint(2, 9, (30,), generator=gen).float()
    pairwise = ((a[:, None] < b[None]).double() + 0.5 * (a[:, None] == b[None]).double()).mean().item()
    assert probability_less(a, b) == pytest.approx(pairwise)
    assert probability_less(torch.zeros(5), torch.zeros(5)) == 0.5
