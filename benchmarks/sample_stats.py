"""Generated continuations of test-split prompts vs. the true continuations: note statistics and grammar errors.

    python benchmarks/sample_stats.py --data /tmp/tokens-full --samples 50 --out /tmp/sample_stats \
        --examples data/examples

For each of --samples test-split pieces (drawn with a fixed seed among those with enough bars), the prompt is
the piece's first --prompt-bars bars (its own tokens, cut before the Bar token that opens the next bar) and
the truth is the next --bars bars. The shipped model continues the prompt through MusicGenerator.continue_midi
(bars=--bars, temperature 1, no top-k/top-p: the product defaults), once grammar-constrained (seed = the
sample index) and once unconstrained (seed 1000 + index). The new tokens are appended to the prompt's tokens and decoded,
so prompt, truth and continuation share one time base; statistics come from musicmha.evaluation.music_stats over the
--bars bars after the prompt (bar lines from each score's own time signatures). A reference row pairs each
truth with the truth of another sampled piece, to show what an unrelated real continuation scores.
Per-sample rows go to OUT/samples.jsonl, the summary table (mean ± standard error over the samples) to stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import (SKIPS, bar_indices, cut_prompt, example_stem, mean, parse_and_load, passage_stats, pick_examples,
                    table_head, table_row)

from musicmha.data.dataset import TokenSplit
from musicmha.evaluation import music_stats as ms


def pick_prompts(split: TokenSplit, bar_id: int, prompt_bars: int, bars: int, count: int, seed: int,
                 tokenizer) -> list[dict]:
    """Pieces drawn in a seeded order whose first prompt_bars bars make a prompt that cut_prompt keeps
    (with the next `bars` bars as its truth); count of them at most."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(split))
    chosen, skipped = [], dict.fromkeys(SKIPS, 0)
    for index in order.tolist():
        ids = split.piece(index).tolist()
        cut = cut_prompt(tokenizer, ids, bar_indices(ids, bar_id), prompt_bars, bars)
        if isinstance(cut, str):
            skipped[cut] += 1
            continue
        chosen.append({"index": index, "source": split.source(index).get("path"), **cut})
        if len(chosen) == count:
            break
    return chosen, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared token folder (its test split)")
    parser.add_argument("--checkpoint", default="checkpoints/musicmha-small")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--prompt-bars", type=int, default=4)
    parser.add_argument("--bars", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="which pieces are drawn")
    parser.add_argument("--out", type=Path, default=Path("/tmp/sample_stats"))
    parser.add_argument("--temperature", type=float, default=None, help="default: the product's (SamplingOptions)")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--no-copy-head", action="store_true", help="sample from the model alone")
    parser.add_argument("--copy-boost", type=float, default=None,
                        help="sample with this copy-head sampling boost instead of the checkpoint's (calibration)")
    parser.add_argument("--split", default="test", choices=["validation", "test"],
                        help="where the prompts come from (calibrate on validation, report on test)")
    parser.add_argument("--modes", default="constrained,unconstrained",
                        help="which decodings to run: constrained, unconstrained or both")
    parser.add_argument("--examples", type=Path, default=None,
                        help="also write 3 example continuations (MIDI + piano roll) here")
    args, generator = parse_and_load(parser)
    tok = generator.tokenizer
    split = TokenSplit(args.data, args.split)
    bar_id = tok.bar_id
    chosen, skipped = pick_prompts(split, bar_id, args.prompt_bars, args.bars, args.samples, args.seed, tok)
    print(f"{len(chosen)} prompts from {len(split)} {args.split} pieces; skipped on the way: {skipped}", flush=True)

    modes = [(mode, mode == "constrained") for mode in ("constrained", "unconstrained")
             if mode in args.modes.split(",")]
    rows = []
    started = time.perf_counter()
    for k, item in enumerate(chosen):
        row = {"index": item["index"], "source": item["source"],
               "truth": passage_stats(tok, item["prompt"], item["truth"], args.prompt_bars, args.bars),
               "truth_error_ratio": tok.token_error_ratio(item["truth"])}
        for mode, constrained in modes:
            result = generator.continue_midi(item["prompt_score"], bars=args.bars, seed=k if constrained else 1000 + k,
                                             constrained=constrained, temperature=args.temperature,
                                             top_k=args.top_k, top_p=args.top_p,
                                             copy_boost=getattr(args, "copy_boost", None))[0]
            new = result.new_token_ids
            row[mode] = passage_stats(tok, item["prompt"], new, args.prompt_bars, args.bars)
            row[mode]["tokens"] = len(new)
            row[mode]["error_ratio"] = tok.token_error_ratio(new)
            # stopped by the bar count once the Bar token after `bars` new bars came; fewer: EOS came first
            row[mode]["eos"] = new.count(bar_id) <= args.bars
            if mode == "constrained":
                item["result"] = result
        rows.append(row)
        item["row"] = row
        new_tokens = " + ".join(str(row[mode]["tokens"]) for mode, _ in modes)
        print(f"{k + 1}/{len(chosen)} {item['source']}: {new_tokens} tokens "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    with open(args.out / "samples.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")

    # reference: each truth against the truth of the next sampled piece (an unrelated real continuation)
    others = [rows[(i + 1) % len(rows)]["truth"] for i in range(len(rows))]
    names = [mode for mode, _ in modes]
    columns = {**{f"model, {mode}": [r[mode] for r in rows] for mode in names}, "another piece's truth": others}
    truths = [r["truth"] for r in rows]
    print()
    print(f"{len(rows)} {args.split}-split prompts of {args.prompt_bars} bars, continuations of {args.bars} bars "
          f"(checkpoint {args.checkpoint})")
    print()
    print(table_head(columns))

    def line(name: str, of_truth, of_other) -> None:
        print(table_row(name, of_truth, columns, of_other))

    line("pitch-class JS divergence to the truth (bits)", "0",
         lambda c: [ms.js_divergence(s["pch"], t["pch"]) for s, t in zip(c, truths)])
    line("pitch-class L1 distance to the truth", "0",
         lambda c: [ms.l1_distance(s["pch"], t["pch"]) for s, t in zip(c, truths)])
    line("pitch-class JS divergence to the prompt (bits)",
         [ms.js_divergence(t["pch"], t["prompt_pch"]) for t in truths],
         lambda c: [ms.js_divergence(s["pch"], t["prompt_pch"]) for s, t in zip(c, truths)])
    line("note density (notes per quarter)", [t["density"] for t in truths], lambda c: [s["density"] for s in c])
    line("abs(density - true density)", "0",
         lambda c: [abs(s["density"] - t["density"]) for s, t in zip(c, truths)])
    line("polyphony (mean notes sounding)", [t["polyphony"] for t in truths], lambda c: [s["polyphony"] for s in c])
    line("abs(polyphony - true polyphony)", "0",
         lambda c: [abs(s["polyphony"] - t["polyphony"]) for s, t in zip(c, truths)])
    line("fraction of repeated bars", [t["repeated_bars"] for t in truths],
         lambda c: [s["repeated_bars"] for s in c])
    def counts(name: str, of_truth: str, of_mode) -> None:
        print(f"| {name} | {of_truth} | " + " | ".join(of_mode(mode) for mode in names) + " | — |")

    counts("token error ratio", f"{mean(r['truth_error_ratio'] for r in rows):.4f}",
           lambda m: f"{mean(r[m]['error_ratio'] for r in rows):.4f}")
    counts("samples with >= 1 token error", f"{sum(r['truth_error_ratio'] > 0 for r in rows)}",
           lambda m: f"{sum(r[m]['error_ratio'] > 0 for r in rows)}")
    counts(f"ended early (EOS before {args.bars} bars)", "—", lambda m: f"{sum(r[m]['eos'] for r in rows)}")
    counts("mean new tokens", f"{mean(len(i['truth']) for i in chosen):.0f}",
           lambda m: f"{mean(r[m]['tokens'] for r in rows):.0f}")
    sampling = {k: getattr(args, k) for k in ("temperature", "top_k", "top_p") if getattr(args, k) is not None}
    head = generator.copy_head
    described = (f"with the copy head {head.weights} at sampling boost {head.sampling_boost:g}" if head
                 else "the model alone")
    print(f"\nsampling: {sampling or 'the product defaults'}; {described}")

    if args.examples is not None:
        write_examples(args.examples, chosen, tok, args)


def write_examples(folder: Path, chosen: list[dict], tok, args) -> None:
    """The first sampled piece (that ran its full length) of each of common.EXAMPLE_COLLECTIONS: prompt + model
    continuation (as `musicmha generate` writes it), its piano roll, and prompt + true continuation."""
    from musicmha.render.pianoroll import piano_roll_png

    folder.mkdir(parents=True, exist_ok=True)
    for item in pick_examples(chosen, lambda item: not item["row"]["constrained"]["eos"]):
        stem = example_stem(item["source"])
        result = item["result"]
        (folder / f"{stem}.continued.mid").write_bytes(result.score.dumps_midi())
        (folder / f"{stem}.truth.mid").write_bytes(tok.decode(item["prompt"] + item["truth"]).dumps_midi())
        piano_roll_png(result.score, folder / f"{stem}.continued.png", boundary_tick=result.boundary_tick,
                       width=900, height=360, title=f"{item['source']}: {args.prompt_bars} bars + model")
        print(f"example: {folder / stem}.continued.mid ({result.continuation.note_num()} new notes, "
              f"seed {result.seed})")


if __name__ == "__main__":
    main()
