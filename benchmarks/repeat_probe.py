"""Does a checkpoint copy real music? Its NLL on a passage heard once, then heard again verbatim (issue 26).

    python benchmarks/repeat_probe.py --midi data/prompts --length 200
    python benchmarks/repeat_probe.py --tokens data/tokens --split test --max-pieces 200 [--checkpoint musicmha-1k]

For each piece with at least --length tokens from its first bar line, the row is BOS, x, x with
x = tokens[first bar : + length] (musicmha/evaluation/induction.py: repeat_row). Each row is scored in one
causal pass: the mean NLL per token of the first hearing (targets x, after BOS) and of the repeat (targets the
second x, with the first before it). A model that copies makes the repeat nearly free (ratio repeat/first
near 0); one that does not scores both alike (ratio near 1). Both the network alone and the network mixed
with the checkpoint's copy head (copy_head.json, when it has one;
musicmha.generation.copy_head.load_copy_head) are scored.

MIDI files are tokenized with the checkpoint's own tokenizer; a token folder must have been prepared with it.
The row (2 x length tokens read) must fit the model's context.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from common import mean_se

from musicmha import checkpoint
from musicmha.errors import MusicmhaError
from musicmha.evaluation.induction import repeat_nll, repeat_row
from musicmha.generation.copy_head import load_copy_head

MIDI_SUFFIXES = (".mid", ".midi")


def midi_pieces(folder: Path, tokenizer) -> list[tuple[str, list[int]]]:
    """(name, ids) of every MIDI file below `folder`, sorted; unreadable files are reported and skipped."""
    pieces = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES):
        try:
            pieces.append((str(path.relative_to(folder)), tokenizer.encode(path)))
        except MusicmhaError as error:
            print(f"skipped {path}: {error}", file=sys.stderr)
    return pieces


def token_pieces(folder: Path, split: str, tokenizer, parser: argparse.ArgumentParser) -> list[tuple[str, list[int]]]:
    """(source path, ids) of the split's pieces, augmented variants left out (each piece counts once)."""
    from musicmha.data.dataset import TokenSplit
    from musicmha.data.tokenizer import MusicTokenizer

    try:
        data = TokenSplit(folder, split)
        if not MusicTokenizer.load(folder).same_vocabulary(tokenizer):
            parser.error(f"{folder} was prepared with another tokenizer than the checkpoint's")
    except MusicmhaError as error:
        parser.error(str(error))
    return [(data.source(i)["path"], data.piece(i).tolist()) for i in range(len(data)) if not data.source(i)["aug"]]


def median_se(values: list[float], draws: int = 2000) -> float | None:
    """Bootstrap standard error of the median (fixed seed: the table is reproducible); None under 2 values."""
    if len(values) < 2:
        return None
    rng = np.random.default_rng(0)
    samples = rng.choice(np.asarray(values), size=(draws, len(values)), replace=True)
    return float(np.median(samples, axis=1).std(ddof=1))


def summary_row(name: str, scores: list[tuple[float, float]]) -> str:
    first, repeat = [s[0] for s in scores], [s[1] for s in scores]
    ratios = [r / f for f, r in scores]
    median = statistics.median(ratios) if ratios else float("nan")
    se = median_se(ratios)
    return (f"| {name} | {len(scores)} | {mean_se(first)} | {mean_se(repeat)} | {mean_se(ratios)} | "
            f"{median:.3f}" + ("" if se is None else f" ± {se:.3f}") + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--midi", type=Path, help="a folder of MIDI files")
    source.add_argument("--tokens", type=Path, help="a token folder prepared with the checkpoint's tokenizer")
    parser.add_argument("--split", default="test", help="with --tokens: the split to read")
    parser.add_argument("--checkpoint", default=None, help="a folder or a shipped model's name (default: the "
                                                           "shipped default)")
    parser.add_argument("--length", type=int, default=400, help="tokens of the passage heard twice")
    parser.add_argument("--max-pieces", type=int, default=None)
    parser.add_argument("--sample-seed", type=int, default=None,
                        help="with --tokens: read the pieces in a seeded random order (a split is sorted by path, "
                             "so its first pieces are one collection's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="per-piece NLLs and the settings")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        folder = checkpoint.resolve(args.checkpoint)
        model, tokenizer = checkpoint.load(folder, device="cpu")
        head = load_copy_head(folder, tokenizer)
    except MusicmhaError as error:
        parser.error(str(error))
    if args.length < 1:
        parser.error("--length must be at least 1")
    if 2 * args.length > model.config.max_seq_len:
        parser.error(f"a row of 2 x {args.length} tokens does not fit {folder.name}'s context of "
                     f"{model.config.max_seq_len} tokens: use --length {model.config.max_seq_len // 2} or less")
    if tokenizer.bar_id is None:
        parser.error(f"{folder.name}'s tokenizer has no bar line token")
    pieces = (midi_pieces(args.midi, tokenizer) if args.midi
              else token_pieces(args.tokens, args.split, tokenizer, parser))
    if args.sample_seed is not None:
        order = np.random.default_rng(args.sample_seed).permutation(len(pieces))
        pieces = [pieces[i] for i in order]
    scored: dict[str, list[tuple[float, float]]] = {"network alone": [], "with copy head": []}
    names, too_short = [], 0
    for name, ids in pieces:
        if args.max_pieces is not None and len(names) >= args.max_pieces:
            break
        row = repeat_row(ids, tokenizer.bar_id, tokenizer.bos_id, args.length)
        if row is None:
            too_short += 1
            continue
        names.append(name)
        scored["network alone"].append(repeat_nll(model, row))
        if head is not None:
            scored["with copy head"].append(repeat_nll(model, row, head))
    print(f"{folder.name}: {len(names)} pieces with {args.length} tokens from their first bar line "
          f"({too_short} too short); the copy head: {'yes' if head is not None else 'none in the checkpoint'}")
    print("| model | pieces | NLL first | NLL repeat | ratio repeat/first (mean) | ratio (median) |\n"
          "|---|---:|---:|---:|---:|---:|")
    for label, scores in scored.items():
        if scores:
            print(summary_row(label, scores))
    if args.json:
        record = {"checkpoint": str(folder), "length": args.length, "source": str(args.midi or args.tokens),
                  "split": None if args.midi else args.split, "too_short": too_short,
                  "sample_seed": args.sample_seed,
                  "pieces": [{"name": n, **{label: list(scores[i]) for label, scores in scored.items() if scores}}
                             for i, n in enumerate(names)]}
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
