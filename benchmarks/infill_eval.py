"""Does the model use the music after a gap? NLL of the true middle bars given both sides vs the left side only.

    python benchmarks/infill_eval.py --checkpoint runs/m1024/model --data data/tokens [--split test]
        [--bars 1,2,4,8] [--pieces 60] [--seed 0] [--json out.json]

For test pieces and bar ranges drawn at random (seeded; a range starts after the piece's first two bars and
ends before its last two, so both sides hold music), the same middle tokens are scored twice with the same
model: (both) after the infill scaffold that `MusicGenerator.infill` builds (musicmha/generation/infill.py:
same truncation to the context; --order spm, the default, lays out `FIM_Suffix suffix FIM_Prefix prefix
FIM_Middle FIM_Bars<n> Bar TimeSig`, psm puts the prefix first), and (left) after the prefix alone, as a
continuation (`prefix Bar TimeSig`). A model that reads the suffix scores the middle clearly lower with both
sides.

--copy-head scores the model mixed with its copy head, which leaves the FIM sentinels out of the history it
searches (musicmha/generation/copy_head.py: the prefix then runs into the middle, the suffix is searchable);
--opaque-sentinels keeps them in, as the head did before (to measure what that is worth).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch
from common import draw_range, full_context_nll, load_generator, scoring_arguments

from musicmha.data.dataset import TokenSplit
from musicmha.errors import ConfigError, MidiError
from musicmha.generation.music_generator import MusicGenerator
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.infill import InfillPlan, bar_lines


def infill_plan(generator: MusicGenerator, ids: list[int], first: int, last: int,
                order: str = "spm") -> InfillPlan | None:
    """The plan MusicGenerator.infill makes for bars first..last of `ids` (same truncation to the context),
    or None where it refuses them: too long for the context, no music around, a meter change."""
    try:
        return generator.plan_infill(ids, first, last, order=order)
    except (ConfigError, MidiError):
        return None


def scored(model, tokens: list[int], start: int, head=None) -> np.ndarray:
    """NLL of tokens[start:] given everything before them: one causal pass (with the copy head mixed in when
    given)."""
    return full_context_nll(model, np.asarray(tokens, dtype=np.int64), start, len(tokens), head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scoring_arguments(parser)
    parser.add_argument("--bars", default="1,2,4,8", help="middle lengths in bars")
    parser.add_argument("--pieces", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opaque-sentinels", action="store_true",
                        help="with --copy-head: let the head search the FIM sentinels too (the old behaviour)")
    parser.add_argument("--order", default="spm", choices=["psm", "spm"],
                        help="scaffold layout (infill.FILL_ORDERS; spm: MusicGenerator.infill's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = load_generator(parser, args.checkpoint, copy_head=args.copy_head, need_copy_head=args.copy_head,
                               need_fim=True)
    head = generator.copy_head
    if head is not None and args.opaque_sentinels:
        head = dataclasses.replace(head, transparent=())
    tok, model = generator.tokenizer, generator.model
    fim = tok.fim_tokens
    split = TokenSplit(args.data, args.split)
    rng = np.random.default_rng(args.seed)
    context = model.config.max_seq_len
    rows, started = [], time.perf_counter()
    order = rng.permutation(len(split))
    for n_bars in (int(b) for b in args.bars.split(",")):
        done = 0
        for index in order:
            if done >= args.pieces:
                break
            piece = split.piece(int(index)).tolist()
            ids = piece[1:-1]  # no BOS/EOS: what tokenizer.encode gives
            lines = bar_lines(TokenGrammar(generator.spec), ids)
            drawn = draw_range(rng, len(lines) - 1, n_bars)
            request = drawn and infill_plan(generator, ids, *drawn, order=args.order)
            if request is None:
                continue
            first, last = drawn
            middle = ids[lines[first - 1][0]:lines[last][0]]
            opening = request.scaffold[request.scaffold.index(fim.middle) + 2:]
            body = middle[len(opening):]  # the true middle after the forced Bar (and TimeSig)
            if not body or middle[:len(opening)] != opening:
                continue
            both = request.scaffold + body
            left_prefix = request.prefix + opening
            left = left_prefix + body
            if len(both) > context or len(left) > context:
                continue
            a = scored(model, both, len(request.scaffold), head)
            b = scored(model, left, len(left_prefix), head)
            rows.append({"bars": n_bars, "piece": int(index), "first": first, "tokens": len(body),
                         "both": float(a.sum()), "left": float(b.sum())})
            done += 1
    print("| middle bars | ranges | tokens | NLL both sides | NLL left side only | gain | ranges where both wins |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n_bars in sorted({r["bars"] for r in rows}):
        mine = [r for r in rows if r["bars"] == n_bars]
        tokens = sum(r["tokens"] for r in mine)
        both, left = sum(r["both"] for r in mine) / tokens, sum(r["left"] for r in mine) / tokens
        wins = sum(r["both"] < r["left"] for r in mine)
        print(f"| {n_bars} | {len(mine)} | {tokens:,} | {both:.4f} | {left:.4f} | {left - both:.4f} | "
              f"{wins} of {len(mine)} |")
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": args.checkpoint, "copy_head": args.copy_head,
                       "opaque_sentinels": args.opaque_sentinels, "split": args.split, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
