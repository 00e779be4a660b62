"""Training speed per position mode: tokens/s of a full optimizer step (forward, backward, AdamW) on a preset's
model and batch, measured side by side in one run; on CUDA also model FLOPs utilization.

    python benchmarks/bench_train.py [--preset small] [--steps 5] [--threads 2] [--bf16]

Random tokens (speed does not depend on the data). MFU counts 6·N FLOPs per token for the weights plus
6·n_layers·L·d_model for causal attention scores and values (half of the 12·n_layers·L·d of a full L×L,
since the masked half need not be computed), over --peak-tflops (default: 989 for an H100 in bf16).
"""

from __future__ import annotations

import argparse
import time

import torch

from musicmha import ModelConfig, MusicTransformer
from musicmha.train_config import PRESETS

VARIANTS = (("none", "auto"), ("rope", "auto"), ("alibi", "auto"), ("relative", "blocked"), ("relative", "sdpa"))


def step_time(config: ModelConfig, batch: int, steps: int, device: str, bf16: bool) -> float:
    torch.manual_seed(0)
    model = MusicTransformer(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    tokens = torch.randint(0, config.vocab_size, (batch, config.max_seq_len + 1), device=device)

    def one_step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    one_step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=list(PRESETS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    preset = PRESETS[args.preset]
    batch = args.batch_size or preset["batch_size"]
    shape = {name: preset[name] for name in ("d_model", "n_layers", "n_heads", "max_seq_len", "dropout")}
    print(f"device: {device}, threads: {args.threads}, preset {args.preset}: {shape}, batch {batch}, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}, mean of {args.steps} steps after a warm-up\n")
    print("| position | backend | params | step s | tokens/s | vs none | MFU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    baseline = None
    for position, backend in VARIANTS:
        config = ModelConfig(vocab_size=530, position=position, attention_backend=backend, **shape)
        seconds = step_time(config, batch, args.steps, device, args.bf16)
        tokens_per_s = batch * config.max_seq_len / seconds
        baseline = baseline or tokens_per_s
        n_params = MusicTransformer(config).num_parameters()
        flops_per_token = 6 * n_params + 6 * config.n_layers * config.max_seq_len * config.d_model
        mfu = f"{flops_per_token * tokens_per_s / (args.peak_tflops * 1e12):.1%}" if device == "cuda" else "n/a"
        print(f"| {position} | {backend} | {n_params:,} | {seconds:.3f} | {tokens_per_s:,.0f} | "
              f"{tokens_per_s / baseline:.2f}x | {mfu} |", flush=True)


if __name__ == "__main__":
    main()
