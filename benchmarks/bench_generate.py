"""Generation: tokens/s with the KV cache vs. recomputing the prefix, and the grammar error ratio of
constrained vs. unconstrained samples.

    python benchmarks/bench_generate.py [--checkpoint DIR] [--new-tokens 512] [--samples 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from musicmha.generator import MusicGenerator, token_error_ratio

PROMPTS = sorted((Path(__file__).resolve().parent.parent / "data" / "prompts").glob("*.mid"))


def tokens_per_second(generator: MusicGenerator, new_tokens: int, use_cache: bool, batch: int) -> float:
    model, tokenizer = generator.model, generator.tokenizer
    prompt = torch.tensor([[tokenizer.bos_id, *tokenizer.encode(PROMPTS[0])[:64]]] * batch)
    started = time.perf_counter()
    model.generate(prompt, new_tokens, top_k=1, use_cache=use_cache)
    return batch * new_tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = MusicGenerator.from_pretrained(args.checkpoint, device="cpu")
    print(f"threads: {args.threads}, model: {generator.model.num_parameters():,} parameters, "
          f"position={generator.model.config.position}, max_seq_len={generator.model.config.max_seq_len}\n")
    print("| batch | cached tok/s | recomputed tok/s | speed-up |")
    print("|---:|---:|---:|---:|")
    for batch in (1, 4):
        cached = tokens_per_second(generator, args.new_tokens, True, batch)
        plain = tokens_per_second(generator, args.new_tokens, False, batch)
        print(f"| {batch} | {cached:,.0f} | {plain:,.0f} | {cached / plain:.1f}x |")
    print(f"\n| decoding | samples | mean token error ratio | samples with errors | s |")
    print("|---|---:|---:|---:|---:|")
    for constrained in (False, True):
        started = time.perf_counter()
        ratios = []
        for first in range(0, args.samples, 20):  # batches of 20 unconditional samples
            results = generator.continue_midi(None, max_new_tokens=256, seed=first, temperature=1.0,
                                              num_samples=min(20, args.samples - first), constrained=constrained)
            ratios += [token_error_ratio(generator.tokenizer, r.token_ids) for r in results]
        name = "grammar-constrained" if constrained else "unconstrained"
        print(f"| {name} | {len(ratios)} | {statistics.mean(ratios):.4f} | {sum(r > 0 for r in ratios)} | "
              f"{time.perf_counter() - started:.0f} |")


if __name__ == "__main__":
    main()
