"""Training throughput of a k-sparse SAE (TopK by default; --arch batchtopk / matryoshka_batchtopk):
dense reference path vs sparse kernels (sae/nn/sparse_ops.py).

A full optimizer step each (training_step, backward, decoder-gradient projection, Adam, renorm) at
the DESIGN.md reference shape: d_in 576, d_sae 4608, k 32, batch 4096. The two paths are timed
interleaved so a busy machine slows both alike; the median step is reported, next to the encoder
GEMM alone (the floor neither path can beat) and the max difference of their gradients.

    python experiments/bench_train.py [--arch topk] [--steps 6] [--threads 2] [--out results/bench/train_<arch>.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from sae.nn import StepContext, TopKSAE, build_sae


def make_sae(arch: str, d_in: int, d_sae: int, k: int, sample: torch.Tensor) -> TopKSAE:
    sae = build_sae(arch, d_in, d_sae, k=k, seed=0)
    sae.init_from_data(sample)
    return sae


def step(sae: TopKSAE, opt: torch.optim.Optimizer, x: torch.Tensor) -> float:
    t = time.perf_counter()
    out = sae.training_step(x, StepContext(progress=0.5))
    sae.apply_gradients(out.loss, opt)
    return time.perf_counter() - t


def gradient_gap(dense: TopKSAE, sparse: TopKSAE, x: torch.Tensor) -> dict:
    """Both paths on identical weights and batch: how far apart are loss and gradients?"""
    grads = {}
    losses = {}
    for name, sae in (("dense", dense), ("sparse", sparse)):
        sae.zero_grad(set_to_none=True)
        out = sae.training_step(x, StepContext(progress=0.5))
        out.loss.backward()
        losses[name] = out.loss.item()
        grads[name] = {n: p.grad.clone() for n, p in sae.named_parameters()}
    gap = {n: (grads["dense"][n] - grads["sparse"][n]).abs().max().item() for n in grads["dense"]}
    scale = {n: grads["dense"][n].abs().max().item() for n in grads["dense"]}
    return {"loss_dense": losses["dense"], "loss_sparse": losses["sparse"],
            "max_abs_grad_diff": gap, "max_abs_grad": scale}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="topk", choices=["topk", "batchtopk", "matryoshka_batchtopk"])
    ap.add_argument("--d-in", type=int, default=576)
    ap.add_argument("--d-sae", type=int, default=4608)
    ap.add_argument("-k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per path (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fused-adam", action="store_true",
                    help="torch's fused CPU Adam (~4x faster optimizer step here) instead of the default the trainer uses")
    ap.add_argument("--out", default=None, help="default results/bench/train_<arch>.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    # Activations with a dominant direction and an offset, like a residual stream (not unit scale).
    g = torch.Generator().manual_seed(0)
    def batch() -> torch.Tensor:
        return 8.0 * torch.randn(args.batch, args.d_in, generator=g) + 3.0

    sample = batch()
    dense = make_sae(args.arch, args.d_in, args.d_sae, args.k, sample)
    dense.sparse_kernels = False
    sparse = copy.deepcopy(dense)
    sparse.sparse_kernels = True
    check = gradient_gap(dense, sparse, sample)

    adam = {"fused": True} if args.fused_adam else {}
    opts = {name: torch.optim.Adam(sae.parameters(), lr=1e-4, **adam) for name, sae in (("dense", dense), ("sparse", sparse))}
    saes = {"dense": dense, "sparse": sparse}
    times: dict[str, list[float]] = {"dense": [], "sparse": []}
    for i in range(args.steps + 1):
        x = batch()
        for name in ("dense", "sparse"):
            dt = step(saes[name], opts[name], x)
            if i > 0:  # the first step of each path is warm-up
                times[name].append(dt)

    xc = sample - dense.b_dec.detach()
    gemm = []
    for _ in range(3):
        t = time.perf_counter()
        torch.addmm(dense.b_enc.detach(), xc, dense.W_enc.detach())
        gemm.append(time.perf_counter() - t)

    result = {
        "architecture": args.arch,
        "shape": {"d_in": args.d_in, "d_sae": args.d_sae, "k": args.k, "batch": args.batch},
        "steps_timed": args.steps,
        "optimizer": "Adam(fused=True)" if args.fused_adam else "Adam (default, as sae/training/trainer.py)",
        "median_step_s": {n: statistics.median(t) for n, t in times.items()},
        "tokens_per_s": {n: args.batch / statistics.median(t) for n, t in times.items()},
        "speedup": statistics.median(times["dense"]) / statistics.median(times["sparse"]),
        "encoder_gemm_s": statistics.median(gemm),
        "encoder_gemm_gflops": 2 * args.batch * args.d_in * args.d_sae / statistics.median(gemm) / 1e9,
        "all_step_s": times,
        "numerics": check,
        "machine": {"torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "load_avg_1m_at_end": os.getloadavg()[0]},
    }
    out = Path(args.out or f"results/bench/train_{args.arch}{'_fused_adam' if args.fused_adam else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("tokens_per_s", "speedup", "encoder_gemm_s")}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
