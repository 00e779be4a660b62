"""Test NLL per group of pieces, for several checkpoints side by side, the network alone (issue 26, item 4).

    python benchmarks/split_nll.py --tokens data/tokens --checkpoints musicmha-1k,musicmha-2 \
        [--split test] [--per-group 60] [--seed 0] [--conditions] [--threads 2] [--json out.json]

`musicmha eval --max-pieces N` reads a split's first N pieces, and a split is sorted by path: its first
pieces are one collection's. This script draws up to --per-group unaugmented pieces (seeded) from each group:
"arrangements" (the corpus's arrangements/ folder) and "collections" (every original music21 collection), and
reports each group's NLL per token and each collection's within the collections group.

Each piece is cut into windows of the model's context (+1 target), as `musicmha eval --mode windows` does.
The token folder's ids are carried by name into each checkpoint's vocabulary, so a checkpoint with another
tokenizer (musicmha-1k has no style or density tokens) reads the same music: only tokens every checkpoint
knows are in the pieces (a prepared piece holds no condition tokens). --conditions puts the piece's own
Style and Density tokens after its BOS for a checkpoint that knows them (as 70% of training rows had them);
those two are read, not scored, and the windows' targets are the same for every checkpoint.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from common import full_context_nll, mean_se, run_record

from musicmha import checkpoint
from musicmha.data.conditioning import ConditionTokens
from musicmha.data.dataset import TokenSplit
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.errors import MusicmhaError


def group_of(path: str) -> tuple[str, str]:
    """(group, collection) of a piece's path in the corpus."""
    collection = path.split("/")[0]
    return ("arrangements" if collection == "arrangements" else "collections"), collection


def draw_pieces(data: TokenSplit, per_group: int, seed: int) -> list[int]:
    """Up to per_group unaugmented sequence indices of each group, drawn without replacement (seeded)."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for i in range(len(data)):
        source = data.source(i)
        if not source.get("aug"):
            by_group[group_of(source["path"])[0]].append(i)
    rng = np.random.default_rng(seed)
    chosen = []
    for group in sorted(by_group):
        indices = by_group[group]
        chosen += sorted(rng.choice(indices, size=min(per_group, len(indices)), replace=False).tolist())
    return chosen


def carry(ids: np.ndarray, names: dict[int, str], vocab: dict[str, int]) -> np.ndarray:
    """The ids of the token folder's vocabulary carried by name into a checkpoint's."""
    return np.array([vocab[names[int(t)]] for t in ids], dtype=np.int64)


def piece_nll(model, ids: np.ndarray, prefix: list[int]) -> tuple[float, int]:
    """(summed NLL, scored tokens) of ids[1:] given everything before, in windows of the context; `prefix`
    (condition tokens) is read after BOS in the first window, never scored."""
    window = model.config.max_seq_len
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1]
        head = [int(chunk[0])] + (prefix if start == 0 else [])
        row = np.concatenate([np.array(head, dtype=np.int64), chunk[1:]])[:window + 1]
        nll = full_context_nll(model, row, len(head), len(row))  # every target after the prefix
        total += float(nll.astype(np.float64).sum())
        count += len(nll)
    return total, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--checkpoints", required=True, help="comma-separated folders or shipped names")
    parser.add_argument("--split", default="test")
    parser.add_argument("--per-group", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", action="store_true", help="give each piece its Style and Density")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        data = TokenSplit(args.tokens, args.split)
        folder_tokenizer = MusicTokenizer.load(args.tokens)
        models = {}
        for name in args.checkpoints.split(","):
            folder = checkpoint.resolve(name)
            models[folder.name] = checkpoint.load(folder, device="cpu")
    except MusicmhaError as error:
        parser.error(str(error))
    names = {i: k for k, i in folder_tokenizer.vocab.items()}
    cond = ConditionTokens.from_vocab(folder_tokenizer.vocab, bar_id=folder_tokenizer.bar_id,
                                      bos_id=folder_tokenizer.bos_id)
    chosen = draw_pieces(data, args.per_group, args.seed)
    print(f"{len(chosen)} pieces of {args.tokens}/{args.split} (seed {args.seed}); conditions: {args.conditions}")
    sums: dict[str, dict[str, list[float]]] = {m: defaultdict(lambda: [0.0, 0]) for m in models}
    per_piece: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in models}
    for number, i in enumerate(chosen, start=1):
        source = data.source(i)
        group, collection = group_of(source["path"])
        ids = data.piece(i)
        for label, (model, tokenizer) in models.items():
            prefix = []
            if args.conditions and cond is not None and "Style_" + str(source.get("style")) in tokenizer.vocab:
                level = cond.level_of(ids)
                prefix = [tokenizer.vocab["Style_" + source["style"]], tokenizer.vocab[f"Density_{level}"]]
            total, count = piece_nll(model, carry(ids, names, tokenizer.vocab), prefix)
            for key in {group, collection if collection == group else f"{group}/{collection}", "all"}:
                sums[label][key][0] += total
                sums[label][key][1] += count
            per_piece[label][group].append(total / count)
        if number % 20 == 0:
            print(f"  {number}/{len(chosen)} pieces", flush=True)
    keys = sorted(sums[next(iter(models))], key=lambda k: (k.count("/"), k))
    print("| group | tokens | " + " | ".join(models) + " |\n|---|---:|" + "---:|" * len(models))
    for key in keys:
        cells = [f"{sums[m][key][0] / sums[m][key][1]:.3f}" for m in models]
        print(f"| {key} | {sums[next(iter(models))][key][1]:,} | " + " | ".join(cells) + " |")
    print("Mean ± s.e. of the per-piece NLL (each piece weighs the same):")
    for group in sorted(per_piece[next(iter(models))]):
        print(f"  {group}: " + ", ".join(f"{m} {mean_se(per_piece[m][group])}" for m in models))
    if args.json:
        record = {**run_record(), "pieces": [data.source(i)["path"] for i in chosen],
                  "nll": {m: {k: v[0] / v[1] for k, v in sums[m].items()} for m in models},
                  "tokens": {k: v[1] for k, v in sums[next(iter(models))].items()}}
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
