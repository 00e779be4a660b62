"""Generation: tokens/s with the KV cache vs. recomputing the prefix, against Hugging Face GPT-2 of the same
size, per position mode; and the grammar error ratio of constrained vs. unconstrained samples.

    python benchmarks/bench_generate.py [--checkpoint DIR] [--new-tokens 512] [--samples 100] [--skip-grammar]
                                        [--device cpu|cuda]

The same-size comparison builds randomly initialized models with the shipped model's shape (d_model,
layers, heads, feed-forward) and a 1024-token context, so 64 prompt + 512 new tokens fit without sliding;
greedy decoding, so every run produces exactly --new-tokens tokens. GPT-2 (`pip install transformers`) uses
its own KV cache through `generate`. Speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch
from common import sync

from musicmha import ModelConfig, MusicTransformer
from musicmha.generation.music_generator import MusicGenerator
from musicmha.generation.options import SamplingOptions
from musicmha.generation.sampling import generate

GREEDY = SamplingOptions(top_k=1)

PROMPTS = sorted((Path(__file__).resolve().parent.parent / "data" / "prompts").glob("*.mid"))


def tokens_per_second(generator: MusicGenerator, new_tokens: int, use_cache: bool, batch: int) -> float:
    model, tokenizer = generator.model, generator.tokenizer
    device = next(model.parameters()).device
    prompt = torch.tensor([[tokenizer.bos_id, *tokenizer.encode(PROMPTS[0])[:64]]] * batch, device=device)
    sync(device)
    started = time.perf_counter()
    generate(model, prompt, GREEDY, new_tokens, use_cache=use_cache)
    sync(device)
    return batch * new_tokens / (time.perf_counter() - started)


def same_size_table(shape: ModelConfig, new_tokens: int, prompt_len: int = 64,
                    device: torch.device = torch.device("cpu")) -> None:
    print("\n| model | batch | cached tok/s | no-cache tok/s | ms/token cached | vs none, cached |")
    print("|---|---:|---:|---:|---:|---:|")
    none_ms: dict[int, float] = {}
    for position in ("none", "relative", "rope", "alibi"):
        config = dataclasses.replace(shape, position=position, max_seq_len=1024, max_relative_distance=0)
        torch.manual_seed(0)
        model = MusicTransformer(config).eval().to(device)
        for batch in (1, 4):
            prompt = torch.randint(3, config.vocab_size, (batch, prompt_len), device=device)
            cached = _timed(lambda: generate(model, prompt, GREEDY, new_tokens), batch * new_tokens, device)
            plain = _timed(lambda: generate(model, prompt, GREEDY, new_tokens, use_cache=False), batch * new_tokens,
                           device)
            ms = 1e3 * batch / cached
            none_ms.setdefault(batch, ms)
            print(f"| musicmha {position} | {batch} | {cached:,.0f} | {plain:,.0f} | {ms:.2f} | "
                  f"{ms / none_ms[batch]:.2f}x |", flush=True)
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        print("| Hugging Face GPT-2 | | not installed (pip install transformers) | | | |")
        return
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=shape.vocab_size, n_positions=1024, n_embd=shape.d_model,
                                      n_layer=shape.n_layers, n_head=shape.n_heads, n_inner=shape.d_ff,
                                      bos_token_id=1, eos_token_id=2)).eval().to(device)
    for batch in (1, 4):
        prompt = torch.randint(3, shape.vocab_size, (batch, prompt_len), device=device)

        def run(use_cache: bool) -> None:
            with torch.no_grad():
                gpt2.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache, pad_token_id=0)

        cached = _timed(lambda: run(True), batch * new_tokens, device)
        plain = _timed(lambda: run(False), batch * new_tokens, device)
        print(f"| HF GPT-2 ({sum(p.numel() for p in gpt2.parameters()):,} params) | {batch} | {cached:,.0f} | "
              f"{plain:,.0f} | {1e3 * batch / cached:.2f} | {1e3 * batch / cached / none_ms[batch]:.2f}x |")


def _timed(fn, n_tokens: int, device: torch.device = torch.device("cpu")) -> float:
    fn()  # warm-up: first-call allocations and lazy initialization stay out of the measurement
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return n_tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-grammar", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the model loads in its "
                        "default dtype there: bf16 on CUDA)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = MusicGenerator.from_pretrained(args.checkpoint, device=str(device))
    print(f"device: {device}, threads: {args.threads}, model: {generator.model.num_parameters():,} parameters, "
          f"position={generator.model.config.position}, max_seq_len={generator.model.config.max_seq_len}\n")
    print("| batch | cached tok/s | recomputed tok/s | speed-up |")
    print("|---:|---:|---:|---:|")
    for batch in (1, 4):
        cached = tokens_per_second(generator, args.new_tokens, True, batch)
        plain = tokens_per_second(generator, args.new_tokens, False, batch)
        print(f"| {batch} | {cached:,.0f} | {plain:,.0f} | {cached / plain:.1f}x |")
    same_size_table(generator.model.config, args.new_tokens, device=device)
    if args.skip_grammar:
        return
    print(f"\n| decoding | samples | mean token error ratio | samples with errors | s |")
    print("|---|---:|---:|---:|---:|")
    for constrained in (False, True):
        started = time.perf_counter()
        ratios = []
        for first in range(0, args.samples, 20):  # batches of 20 unconditional samples
            results = generator.continue_midi(None, max_new_tokens=256, seed=first, temperature=1.0,
                                              num_samples=min(20, args.samples - first), constrained=constrained)
            ratios += [generator.tokenizer.token_error_ratio(r.token_ids) for r in results]
        name = "grammar-constrained" if constrained else "unconstrained"
        print(f"| {name} | {len(ratios)} | {statistics.mean(ratios):.4f} | {sum(r > 0 for r in ratios)} | "
              f"{time.perf_counter() - started:.0f} |")


if __name__ == "__main__":
    main()
