"""Training speed: tokens/s of a full optimizer step (forward, backward, AdamW) per position mode, precision
and optimizer, on a preset's model and batch, measured side by side in one run (variants timed round robin,
so a machine that gets busier slows every variant alike); on CUDA also model FLOPs utilization.

    python benchmarks/bench_train.py [--preset small] [--max-seq-len 1024] [--precisions fp32,bf16]
        [--variants relative:blocked,rope:auto] [--dropout 0.1] [--n-layers 6] [--adamw foreach,fused]
        [--steps 5] [--rounds 2] [--threads 2]

Random tokens (speed does not depend on the data). MFU counts 6·N FLOPs per token for the weights plus
6·n_layers·L·d_model for causal attention scores and values (half of the 12·n_layers·L·d of a full L×L,
since the masked half need not be computed), over --peak-tflops (default: 989 for an H100 in bf16).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from common import make_step

from musicmha import ModelConfig
from musicmha.training.config import PRESETS

VARIANTS = (("none", "auto"), ("rope", "auto"), ("alibi", "auto"), ("relative", "blocked"), ("relative", "sdpa"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=list(PRESETS))
    parser.add_argument("--max-seq-len", type=int, default=None, help="default: the preset's")
    parser.add_argument("--d-model", type=int, default=None, help="default: the preset's")
    parser.add_argument("--n-layers", type=int, default=None, help="default: the preset's")
    parser.add_argument("--dropout", type=float, default=None, help="default: the preset's")
    parser.add_argument("--variants", default=",".join(f"{p}:{b}" for p, b in VARIANTS),
                        help="position:backend pairs")
    parser.add_argument("--precisions", default="fp32", help="fp32 and/or bf16 (autocast)")
    parser.add_argument("--adamw", default="foreach", help="foreach, single (for-loop) and/or fused")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--bf16", action="store_true", help="same as --precisions bf16")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    preset = PRESETS[args.preset]
    batch = args.batch_size or preset["batch_size"]
    shape = {name: preset[name] for name in ("d_model", "n_layers", "n_heads", "max_seq_len", "dropout")}
    for name in ("d_model", "max_seq_len", "n_layers", "dropout"):
        if getattr(args, name) is not None:
            shape[name] = getattr(args, name)
    precisions = ["bf16"] if args.bf16 else args.precisions.split(",")
    variants = [tuple(v.split(":")) for v in args.variants.split(",")]
    runs = list(itertools.product(variants, precisions, args.adamw.split(",")))
    print(f"device: {device}, threads: {args.threads}, preset {args.preset}: {shape}, batch {batch}, "
          f"mean of {args.steps} steps x {args.rounds} round(s) after a warm-up, variants round robin\n")
    steps, seconds, params = {}, {run: 0.0 for run in runs}, {}
    for run in runs:
        (position, backend), precision, adamw = run
        config = ModelConfig(vocab_size=530, position=position, attention_backend=backend, **shape)
        steps[run], params[run] = make_step(config, batch, device, precision, adamw)
    for _ in range(args.rounds):
        for run in runs:
            started = time.perf_counter()
            for _ in range(args.steps):
                steps[run]()
            seconds[run] += time.perf_counter() - started
    print("| position | backend | precision | AdamW | params | step s | tokens/s | vs first | MFU |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    baseline = None
    for run in runs:
        (position, backend), precision, adamw = run
        step_s = seconds[run] / (args.steps * args.rounds)
        tokens_per_s = batch * shape["max_seq_len"] / step_s
        baseline = baseline or tokens_per_s
        flops_per_token = 6 * params[run] + 6 * shape["n_layers"] * shape["max_seq_len"] * shape["d_model"]
        mfu = f"{flops_per_token * tokens_per_s / (args.peak_tflops * 1e12):.1%}" if device == "cuda" else "n/a"
        print(f"| {position} | {backend} | {precision} | {adamw} | {params[run]:,} | {step_s:.3f} | "
              f"{tokens_per_s:,.0f} | {tokens_per_s / baseline:.2f}x | {mfu} |", flush=True)


if __name__ == "__main__":
    main()
