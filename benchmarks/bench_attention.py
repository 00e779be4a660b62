"""Attention speed and memory: every position mode and backend vs. SDPA causal with no positions, and vs. the
textbook relative attention (Huang et al.'s pad-and-reshape skew, masked softmax, all in plain ops).

    python benchmarks/bench_attention.py [--lengths 512 1024 2048 4096] [--tokens 4096] [--threads 2]

The batch is tokens / L, so every row of the table attends over the same number of tokens (L=1024 gives
B=4, H=8, D=64: the shape the speed targets are stated for). Times are taken in this process, the variants
of one length in turn (round robin, so a burst of load from elsewhere hits them alike), best of --reps
after a warm-up. Peak memory is read in a fresh child process per (L, variant): on CUDA
max_memory_allocated, on the CPU the growth of the process's resident high-water mark over the inputs (forward +
backward).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from common import sync

VARIANTS = ("sdpa-causal", "rope", "alibi", "relative/blocked", "relative/sdpa", "relative/flex", "naive-relative")


def naive_relative(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_emb: torch.Tensor) -> torch.Tensor:
    """Music Transformer relative attention as the paper writes it: Q Eᵀ, pad a column, reshape, slice."""
    batch, heads, length, head_dim = q.shape
    table = rel_emb[:, (torch.arange(length - 1, -1, -1, device=q.device)).clamp(max=rel_emb.shape[1] - 1)]
    rel = torch.matmul(q, table.transpose(-1, -2))  # (B, H, L, L): column m is distance L-1-m
    rel = F.pad(rel, (1, 0)).reshape(batch, heads, length + 1, length)[:, :, 1:]  # the skew
    scores = (torch.matmul(q, k.transpose(-1, -2)) + rel) / head_dim**0.5
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    return torch.matmul(scores.masked_fill(future, float("-inf")).softmax(-1), v)


def build(variant: str, heads: int, head_dim: int, length: int, device: str):
    from musicmha import MultiHeadAttention

    if variant == "sdpa-causal":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), []
    if variant == "naive-relative":
        rel_emb = torch.randn(heads, length, head_dim, device=device, requires_grad=True)
        return lambda q, k, v: naive_relative(q, k, v, rel_emb), [rel_emb]
    position, _, backend = variant.partition("/")
    mha = MultiHeadAttention(heads * head_dim, heads, position=position, max_relative_distance=length - 1,
                             backend=backend or "auto").to(device)
    rotate = mha.scheme.rotate  # RoPE's rotation is part of what is timed; the other schemes return q, k
    return lambda q, k, v: mha.attend(rotate(q, 0), rotate(k, 0), v), list(mha.parameters())


def peak_bytes(device: str) -> int:
    """CUDA: peak allocated. CPU: the process's resident high-water mark (VmHWM), not ru_maxrss, which a
    child inherits from its parent on Linux."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident size


def setup(spec: dict):
    """Inputs and the attention callable for one (length, variant); returns (forward, forward_backward, batch)."""
    torch.manual_seed(0)
    device, length, heads, head_dim = spec["device"], spec["length"], spec["heads"], spec["head_dim"]
    batch = max(1, spec["tokens"] // length)
    dtype = torch.bfloat16 if spec["bf16"] else torch.float32
    q, k, v = (torch.randn(batch, heads, length, head_dim, device=device, dtype=dtype, requires_grad=True)
               for _ in range(3))
    attention, params = build(spec["variant"], heads, head_dim, length, device)
    for p in params:
        p.data = p.data.to(dtype)

    def forward() -> None:
        with torch.no_grad():
            attention(q, k, v)
        sync(device)

    def forward_backward() -> None:
        attention(q, k, v).sum().backward()
        sync(device)

    return forward, forward_backward, batch


def child_peak_memory(spec: dict) -> int:
    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    _, forward_backward, _ = setup(spec)
    reset_peak(device)
    before = peak_bytes(device)
    forward_backward()
    return peak_bytes(device) - before


def time_length(specs: list[dict], reps: int) -> dict[str, dict]:
    """Best-of-reps times for every variant of one length, measured in turn."""
    prepared = {spec["variant"]: setup(spec) for spec in specs}
    for forward, forward_backward, _ in prepared.values():
        forward_backward()  # warm-up
        forward()
    results = {name: {"fwd": float("inf"), "fwd_bwd": float("inf"), "batch": batch}
               for name, (_, _, batch) in prepared.items()}
    for _ in range(reps):
        for name, (forward, forward_backward, _) in prepared.items():
            for key, fn in (("fwd", forward), ("fwd_bwd", forward_backward)):
                started = time.perf_counter()
                fn()
                results[name][key] = min(results[name][key], time.perf_counter() - started)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--tokens", type=int, default=4096, help="batch size times length")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--variants", nargs="+", default=None, choices=VARIANTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(child_peak_memory(json.loads(args.child)))
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = args.variants or [v for v in VARIANTS if device == "cuda" or v != "relative/flex"]
    print(f"device: {device}, threads: {args.threads}, tokens per batch: {args.tokens}, H={args.heads}, "
          f"D={args.head_dim}, dtype: {'bf16' if args.bf16 else 'fp32'}; times are the best of {args.reps}\n")
    print("| L | B | variant | fwd ms | fwd vs SDPA | fwd+bwd ms | fwd+bwd vs SDPA | fwd+bwd vs naive | peak MiB |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        specs = [dict(variant=variant, length=length, tokens=args.tokens, heads=args.heads,
                      head_dim=args.head_dim, threads=args.threads, bf16=args.bf16, device=device)
                 for variant in variants]
        results = time_length(specs, args.reps)
        for spec in specs:
            child = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                   capture_output=True, text=True)
            ok = child.returncode == 0
            results[spec["variant"]]["peak"] = int(child.stdout.strip().splitlines()[-1]) if ok else None
        base, naive = results.get("sdpa-causal"), results.get("naive-relative")
        for variant, r in results.items():
            ratio = lambda ref, key: f"{r[key] / ref[key]:.2f}x" if ref else "n/a"  # noqa: E731
            peak = f"{r['peak'] / 2**20:,.0f}" if r["peak"] is not None else "failed"
            print(f"| {length} | {r['batch']} | {variant} | {r['fwd'] * 1e3:.1f} | {ratio(base, 'fwd')} | "
                  f"{r['fwd_bwd'] * 1e3:.1f} | {ratio(base, 'fwd_bwd')} | {ratio(naive, 'fwd_bwd')} | {peak} |",
                  flush=True)


if __name__ == "__main__":
    main()
