"""Does the model use its long context? The same targets scored with the whole piece before them vs a short tail.

    python benchmarks/long_context.py --checkpoint checkpoints/musicmha-small --data data/tokens \
        [--split test] [--targets 768:1024] [--short 256] [--max-pieces N] [--json out.json]

For every piece of the split longer than the end of the target range, targets at positions [a, b) (BOS is
position 0) are scored twice: (full) from one window holding the piece's first b tokens, so target t sees
all t tokens before it; (short) each target t from its own window of the `--short` tokens before it. Both
numbers come from the same pieces and the same targets, so their difference is the value of the context
beyond `--short` tokens. NLL by position bucket alone cannot show this: late positions only exist in long
pieces, a different mix of music. Pieces with FIM sentinels play no part (test pieces have none).

The second table splits the targets by musicmha/evaluation/repeats.py's copy classes (--repeat-k tokens
matched): "near" targets continue an exact repeat whose earlier copy lies inside the short tail, "far" ones
one that only the full context holds, "none" the rest. A model that copies scores near and far targets far
below the rest, and the gain lives in the far ones.

--copy-head scores the model mixed with its copy head (musicmha/generation/copy_head.py); the head sees exactly the
window the model sees, so in the short scoring it can only copy from the last `--short` tokens.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from common import full_context_nll, load_generator, scoring_arguments, standard_error

from musicmha.data.dataset import TokenSplit
from musicmha.evaluation.evaluate import log_probs  # the model alone, or mixed with its copy head
from musicmha.evaluation.repeats import CLASSES, copy_classes


@torch.inference_mode()
def target_nll(model, windows: np.ndarray, targets: np.ndarray, batch: int, head=None) -> np.ndarray:
    """windows (N, L) of inputs; targets (N,) the token after each window's last: NLL of each target."""
    out = []
    for i in range(0, len(windows), batch):
        x = torch.from_numpy(windows[i:i + batch])
        logp = log_probs(model, x, head)[:, -1]
        y = torch.from_numpy(targets[i:i + batch])
        out.append(-logp.gather(1, y[:, None])[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scoring_arguments(parser)
    parser.add_argument("--targets", default="768:1024", help="target positions a:b")
    parser.add_argument("--short", type=int, default=256, help="tokens of context in the short scoring")
    parser.add_argument("--max-pieces", type=int, default=None)
    parser.add_argument("--repeat-k", type=int, default=32, help="tokens a copy must match (repeat classes)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start, end = (int(x) for x in args.targets.split(":"))
    generator = load_generator(parser, args.checkpoint, copy_head=args.copy_head, need_copy_head=args.copy_head)
    model, head = generator.model, generator.copy_head  # the head sees the window the model sees
    if end > model.config.max_seq_len:
        parser.error(f"targets up to {end} need a context of {end} tokens; the model has {model.config.max_seq_len}")
    if not 0 < args.short < start:
        parser.error("--short must be positive and below the first target position")
    split = TokenSplit(args.data, args.split)
    pieces = [p for p in split.iter_pieces() if len(p) > end]
    if args.max_pieces:
        pieces = pieces[:args.max_pieces]
    started = time.perf_counter()
    full, short, classes = [], [], []
    for piece in pieces:
        classes += copy_classes(piece, start, end, short=args.short, k=args.repeat_k)
        full.append(full_context_nll(model, piece, start, end, head))
        # Window k holds the `short` tokens before target start + k.
        windows = np.lib.stride_tricks.sliding_window_view(piece[start - args.short:end - 1], args.short)
        short.append(target_nll(model, np.ascontiguousarray(windows), piece[start:end], args.batch_size, head))
    full_all, short_all = np.concatenate(full), np.concatenate(short)
    per_piece = np.array([s.mean() - f.mean() for f, s in zip(full, short, strict=True)])
    result = {
        "checkpoint": args.checkpoint, "copy_head": args.copy_head, "split": args.split, "pieces": len(pieces),
        "targets": int(full_all.size),
        "target_positions": [start, end], "short_context": args.short,
        "nll_full": float(full_all.mean()), "nll_short": float(short_all.mean()),
        "gain": float(short_all.mean() - full_all.mean()),
        "pieces_where_full_is_better": int((per_piece > 0).sum()),
        "gain_standard_error": standard_error(per_piece),
        "seconds": round(time.perf_counter() - started, 1),
    }
    labels = np.array(classes)
    result["by_repeat"] = {c: {"share": float((labels == c).mean()), "nll_full": float(full_all[labels == c].mean()),
                               "nll_short": float(short_all[labels == c].mean())}
                           for c in CLASSES if (labels == c).any()}
    print(f"{args.checkpoint}, {'model + copy head' if head else 'model alone'}\n")
    print(f"| pieces | targets | NLL, full context | NLL, last {args.short} tokens | gain | pieces where full wins |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {result['pieces']} | {result['targets']:,} | {result['nll_full']:.4f} | {result['nll_short']:.4f} | "
          f"{result['gain']:.4f} ± {result['gain_standard_error'] or 0:.4f} | "
          f"{result['pieces_where_full_is_better']} of {result['pieces']} |")
    print(f"\nBy copy class ({args.repeat_k}-token exact repeats; near: the copy is inside the last {args.short} tokens):\n")
    print(f"| class | share of targets | NLL, full context | NLL, last {args.short} tokens | gain |")
    print("|---|---:|---:|---:|---:|")
    for name, row in result["by_repeat"].items():
        print(f"| {name} | {row['share']:.3f} | {row['nll_full']:.4f} | {row['nll_short']:.4f} | "
              f"{row['nll_short'] - row['nll_full']:.4f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
