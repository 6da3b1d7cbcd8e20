"""Feature-dictionary exports of an inspected SAE.

1. JSON Lines (`write_feature_dictionary`), one feature per line, self-contained:
   {"id", "decoder": {"file", "tensor", "row"}, "density", "fire_count", "max_activation",
    "top_tokens": [[text, share]], "top_logits": {"promoted": [[text, value]], "suppressed": [...]},
    "examples": [{"text", "tokens", "acts", "center", "value"}]}
   The decoder direction is referenced, not copied: row `row` of tensor `W_dec` in the SAE's
   `sae_weights.safetensors` (SAELens layout, raw activation space).

2. Neuronpedia-style folder (`write_neuronpedia`): `source.json` (model, hook, source id, counts)
   and `features/<index>.json`, one file per feature, in the field layout of Neuronpedia's feature
   and activation records (modelId, layer, index, maxActApprox, hookName, pos_str / pos_values,
   neg_str / neg_values, frac_nonzero, freq_hist_data_bar_heights / _values, topkCosSimIndices /
   Values, activations[{tokens, values, maxValue, maxValueTokenIndex, minValue, binMin, binMax,
   binContains}], explanations: [] ready to be filled by an auto-interpretation step).
Both are written atomically (temporary name, then rename).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from sae.analysis.feature_inspection import InspectionReport
from sae.analysis.feature_records import feature_records, token_strings, used_token_ids
from sae.analysis.logit_effects import LogitEffects

WEIGHTS_FILE = "sae_weights.safetensors"


def _strings(records: list[dict], tokenizer) -> dict[int, str]:
    return token_strings(tokenizer, used_token_ids(records))


def dictionary_line(record: dict, text: dict[int, str], weights_file: str) -> dict:
    return {
        "id": record["id"],
        "decoder": {"file": weights_file, "tensor": "W_dec", "row": record["id"]},
        "density": record["density"],
        "fire_count": record["fire_count"],
        "max_activation": record["max_activation"],
        "mean_firing_activation": record["mean_firing_activation"],
        "top_tokens": [[text[i], share] for i, share in record["top_tokens"]],
        "top_logits": {side: [[text[i], v] for i, v in pairs] for side, pairs in record["logits"].items()},
        "examples": [{"text": "".join(text[t] for t in c["tokens"]), "tokens": [text[t] for t in c["tokens"]],
                      "acts": c["acts"], "center": c["center"], "value": c["value"]} for c in record["contexts"]],
    }


def write_feature_dictionary(path: str | Path, report: InspectionReport, tokenizer, logits: LogitEffects | None = None,
                             sae_dir: str | Path | None = None, units=None, records: list[dict] | None = None,
                             **record_kw) -> Path:
    """`records` (from sae.analysis.feature_records) skips rebuilding them; else built for `units`."""
    path = Path(path)
    records = records if records is not None else feature_records(report, logits, units, **record_kw)
    text = _strings(records, tokenizer)
    weights = str(Path(sae_dir) / WEIGHTS_FILE) if sae_dir is not None else WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(dictionary_line(r, text, weights), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_feature_dictionary(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@torch.no_grad()
def cosine_neighbours(W_dec: torch.Tensor, k: int = 5, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k decoder neighbours by cosine (self excluded), chunked over rows."""
    W = torch.nn.functional.normalize(W_dec.detach().float(), dim=1)
    idx, val = [], []
    for lo in range(0, W.shape[0], chunk):
        cos = W[lo:lo + chunk] @ W.T
        rows = torch.arange(lo, min(lo + chunk, W.shape[0]))
        cos[rows - lo, rows] = -2.0
        top = cos.topk(min(k, W.shape[0] - 1), dim=1)
        idx.append(top.indices)
        val.append(top.values)
    return torch.cat(idx), torch.cat(val)


def neuronpedia_feature(record: dict, text: dict[int, str], source: dict, edges: list[float],
                        neighbours: tuple[list[int], list[float]] | None) -> dict:
    heights = record["hist"]
    centres = [round((edges[i] * edges[i + 1]) ** 0.5, 6) for i in range(len(heights))]  # geometric bin centres
    activations = []
    for c in record["contexts"]:
        values = [a if a is not None else 0.0 for a in c["acts"]]
        activations.append({"tokens": [text[t] for t in c["tokens"]], "values": values,
                            "maxValue": c["value"], "maxValueTokenIndex": c["center"], "minValue": min(values),
                            "binMin": -1, "binMax": -1, "binContains": -1, "dataIndex": str(c["position"])})
    return {
        "modelId": source["modelId"], "layer": source["layer"], "index": str(record["id"]),
        "hookName": source["hookName"], "maxActApprox": record["max_activation"],
        "pos_str": [text[i] for i, _ in record["logits"]["promoted"]],
        "pos_values": [v for _, v in record["logits"]["promoted"]],
        "neg_str": [text[i] for i, _ in record["logits"]["suppressed"]],
        "neg_values": [v for _, v in record["logits"]["suppressed"]],
        "frac_nonzero": record["density"],
        "freq_hist_data_bar_heights": heights, "freq_hist_data_bar_values": centres,
        "topkCosSimIndices": neighbours[0] if neighbours else [],
        "topkCosSimValues": neighbours[1] if neighbours else [],
        "activations": activations,
        "explanations": [],
    }


def write_neuronpedia(out_dir: str | Path, report: InspectionReport, tokenizer, logits: LogitEffects | None,
                      model_id: str, hook_name: str, source_id: str | None = None, W_dec: torch.Tensor | None = None,
                      units=None, records: list[dict] | None = None, **record_kw) -> Path:
    """One JSON per feature under out_dir/features/, plus out_dir/source.json. Replaces out_dir atomically.
    `records` (from sae.analysis.feature_records) skips rebuilding them; else built for `units`."""
    out_dir = Path(out_dir)
    layer = source_id or f"{hook_name.split('.')[1] if hook_name.startswith('blocks.') else 0}-sae-{report.n_units}"
    source = {"modelId": model_id, "layer": layer, "hookName": hook_name, "numFeatures": report.n_units,
              "nTokensInspected": report.n_tokens, "contextSize": report.context_size}
    records = records if records is not None else feature_records(report, logits, units, **record_kw)
    text = _strings(records, tokenizer)
    edges = report.settings.hist_edges().tolist()
    neighbours = cosine_neighbours(W_dec) if W_dec is not None else None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (tmp / "features").mkdir()
        for r in records:
            nb = (neighbours[0][r["id"]].tolist(), [round(v, 4) for v in neighbours[1][r["id"]].tolist()]) if neighbours else None
            feature = neuronpedia_feature(r, text, source, edges, nb)
            (tmp / "features" / f"{r['id']}.json").write_text(json.dumps(feature, ensure_ascii=False))
        (tmp / "source.json").write_text(json.dumps({**source, "nFeaturesExported": len(records)}, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
