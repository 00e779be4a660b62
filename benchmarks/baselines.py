"""Token-level NLL baselines on a prepared token folder: unigram cross-entropy and Kneser-Ney n-grams.

    python benchmarks/baselines.py data/tokens --split test --orders 2,3,4
"""

from __future__ import annotations

import argparse
import time

from musicmha.data.dataset import TokenSplit
from musicmha.evaluation.ngram import KneserNey, perplexity, unigram_nll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokens")
    parser.add_argument("--split", default="test")
    parser.add_argument("--orders", default="2,3,4")
    args = parser.parse_args()
    train, test = TokenSplit(args.tokens, "train"), TokenSplit(args.tokens, args.split)
    print(f"| model | {args.split} NLL (nats/token) | perplexity | fit + score (s) |")
    print("|---|---:|---:|---:|")
    started = time.perf_counter()
    nll, n = unigram_nll(train.iter_pieces(), test.iter_pieces(), train.vocab_size)
    print(f"| unigram (add-one) | {nll / n:.4f} | {perplexity(nll, n):.2f} | {time.perf_counter() - started:.1f} |")
    for order in (int(x) for x in args.orders.split(",")):
        started = time.perf_counter()
        model = KneserNey(train.iter_pieces(), order=order, vocab_size=train.vocab_size, bos_id=train.bos_id)
        nll, n = model.nll(test.iter_pieces())
        print(f"| {order}-gram Kneser-Ney | {nll / n:.4f} | {perplexity(nll, n):.2f} | "
              f"{time.perf_counter() - started:.1f} |")


if __name__ == "__main__":
    main()
