"""Infilled bars vs the true middle bars and vs a plain continuation: note statistics and the seams.

    python benchmarks/infill_stats.py --data data/tokens --checkpoint checkpoints/musicmha-1k --samples 50 \
        --out /tmp/infill_stats --examples data/examples

For each of --samples test-split pieces (drawn with a fixed seed), a range of --bars bars is drawn as
benchmarks/infill_eval.py draws it (after the piece's first two bars, ending at least two bars before its end)
and kept when MusicGenerator.infill's plan accepts it (it fits the model's context, one meter). The piece's
tokens are decoded to a score, which re-encodes to the same tokens, so the generator reads exactly this piece;
its plan keeps the bars around the range that fit the context. Four versions of the range are compared, each
laid into the piece with musicmha.generation.result.merge_into_prompt(..., replace_span=) (notes starting outside
the range stay as they are):

- truth: the piece as it is;
- infilled: MusicGenerator.infill(piece, first, last, seed=k), grammar-constrained, product default sampling;
- continuation: MusicGenerator.continue_midi(piece before the range, bars=n, seed=k), the same bars written
  from the left side alone, then the true suffix re-attached after it;
- another piece's middle: the true range of the next sampled piece, moved to this range (a reference for
  what unrelated real music scores).

Statistics over the range (musicmha.evaluation.music_stats): pitch-class JS divergence to the true range and
to the surrounding music (the prefix and suffix the infill plan lets the model read), note density,
polyphony, the fraction of bars repeating an earlier bar of the piece, and both seams (music_stats.seam: the
top voice's leap and the onset gap between the last onset before the range's start or end and the first
from it). The end seam of the continuation is its join to the true suffix: where infill should join better.
Per-sample rows go to OUT/samples.jsonl, the summary table (mean ± standard error) to stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import symusic
from PIL import Image, ImageDraw

from common import draw_range, example_stem, mean, parse_and_load, pick_examples, table_head, table_row
from infill_eval import infill_plan

from musicmha.app.views import window  # the app's window around a range: same tempo and meter handling
from musicmha.data.dataset import TokenSplit
from musicmha.evaluation import music_stats as ms
from musicmha.generation import infill as fill
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.music_generator import MusicGenerator
from musicmha.generation.result import merge_into_prompt
from musicmha.render.pianoroll import piano_roll

EXAMPLE_CONTEXT_BARS = 4  # bars before and after the range in an example's MIDI files and piano roll
COLUMNS = {"infilled": "infilled", "continuation": "continuation (left side only)",
           "reference": "another piece's middle"}


def pick_ranges(split: TokenSplit, generator: MusicGenerator, n_bars: int, count: int,
                seed: int) -> tuple[list[dict], dict]:
    """Pieces with a drawn range the infill plan accepts, whose score and prefix re-encode to their own tokens
    (so both generators read exactly them) and with notes in the prefix and in the true range."""
    tok = generator.tokenizer
    rng = np.random.default_rng(seed)
    skipped = dict.fromkeys(("too short", "refused by the infill plan", "does not round-trip", "no notes"), 0)
    chosen = []
    for index in rng.permutation(len(split)).tolist():
        ids = split.piece(index).tolist()[1:-1]  # no BOS/EOS: what tokenizer.encode gives
        lines = fill.bar_lines(TokenGrammar(generator.spec), ids)
        drawn = draw_range(rng, len(lines) - 1, n_bars)
        if drawn is None:
            skipped["too short"] += 1
            continue
        request = infill_plan(generator, ids, *drawn)
        if request is None:
            skipped["refused by the infill plan"] += 1
            continue
        first, last = drawn
        piece, prefix = tok.decode(ids), tok.decode(ids[:lines[first - 1][0]])
        if tok.encode(piece) != ids or tok.encode(prefix) != ids[:lines[first - 1][0]]:
            skipped["does not round-trip"] += 1
            continue
        tpq = piece.ticks_per_quarter
        span = (fill.to_ticks(request.start_quarters, tpq), fill.to_ticks(request.end_quarters, tpq))
        if not prefix.note_num() or not len(ms.notes_array(piece, *span)):
            skipped["no notes"] += 1
            continue
        chosen.append({"index": index, "source": split.source(index).get("path"), "bars": drawn, "span": span,
                       "piece": piece, "prefix": prefix, "lines": lines,
                       "window": visible_window(request, lines, last, tok, tpq)})
        if len(chosen) == count:
            break
    return chosen, skipped


def visible_window(request: fill.InfillPlan, lines: list[tuple[int, float]], last: int, tok,
                   tpq: int) -> tuple[int, int]:
    """[start, end) ticks of the music the infill scaffold shows the model: where its prefix starts to where
    its suffix stops (plan cuts the suffix at a bar line when the whole of it does not fit)."""
    scaffold, fim = request.scaffold, tok.fim_tokens
    suffix = scaffold[scaffold.index(fim.suffix) + 1:scaffold.index(fim.middle)]
    stop = lines[last][0] + len(suffix) - suffix.count(tok.eos_id)  # token index where the shown suffix ends
    end_quarters = next((q for i, q in lines if i >= stop), lines[-1][1])
    return fill.to_ticks(request.prefix_quarters, tpq), fill.to_ticks(end_quarters, tpq)


def range_stats(score: symusic.Score, span: tuple[int, int]) -> dict:
    """Note statistics of `score` over the range and its two seams."""
    start, end = span
    opening, closing = ms.seam(score, start), ms.seam(score, end)
    return {"notes": int(len(ms.notes_array(score, start, end))),
            "pch": ms.pitch_class_histogram(score, start, end).tolist(),
            "density": ms.note_density(score, start, end), "polyphony": ms.polyphony(score, start, end),
            "repeated_bars": ms.repeated_bar_fraction(score, start, end, since=0),
            "start_leap": opening.leap, "start_gap": opening.gap, "end_leap": closing.leap, "end_gap": closing.gap}


def moved_middle(item: dict, span: tuple[int, int]) -> symusic.Score:
    """The notes starting in `item`'s true range, moved to start at span[0] (place() cuts them at span[1])."""
    start, end = item["span"]
    return item["piece"].clip(start, end, clip_end=False).shift_time(span[0] - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared token folder (its test split)")
    parser.add_argument("--checkpoint", default="checkpoints/musicmha-1k", help="a model trained with FIM")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--bars", type=int, default=2, help="bars regenerated per piece")
    parser.add_argument("--seed", type=int, default=0, help="which pieces and ranges are drawn")
    parser.add_argument("--no-copy-head", action="store_true", help="sample from the model alone")
    parser.add_argument("--out", type=Path, default=Path("/tmp/infill_stats"))
    parser.add_argument("--examples", type=Path, default=None,
                        help="also write 3 example infills (MIDI + piano roll) here and describe them in its README.md")
    args, generator = parse_and_load(parser, need_fim=True)
    tok = generator.tokenizer
    split = TokenSplit(args.data, "test")
    chosen, skipped = pick_ranges(split, generator, args.bars, args.samples, args.seed)
    print(f"{len(chosen)} ranges from {len(split)} test pieces; skipped on the way: {skipped}", flush=True)

    rows, started = [], time.perf_counter()
    for k, item in enumerate(chosen):
        piece, span = item["piece"], item["span"]
        infilled = generator.infill(piece, *item["bars"], seed=k)[0]
        assert infilled.span == span, (infilled.span, span)  # the generator planned the same range
        continued = generator.continue_midi(item["prefix"], bars=args.bars, seed=k)[0]
        item["versions"] = {"truth": piece, "infilled": infilled.score,
                            "continuation": merge_into_prompt(piece, continued.continuation, replace_span=span)}
        around = merge_into_prompt(piece, symusic.Score(piece.ticks_per_quarter), replace_span=span)  # prefix and suffix alone
        row = {"index": item["index"], "source": item["source"], "bars": list(item["bars"]), "span": list(span),
               "seed": k, "window": list(item["window"]),
               "around_pch": ms.pitch_class_histogram(around, *item["window"]).tolist()}
        for name in ("truth", "infilled", "continuation"):
            row[name] = range_stats(item["versions"][name], span)
        for name, result in (("infilled", infilled), ("continuation", continued)):
            row[name]["tokens"] = len(result.new_token_ids)
            row[name]["error_ratio"] = tok.token_error_ratio(result.new_token_ids)
        rows.append(row)
        item["row"] = row
        print(f"{k + 1}/{len(chosen)} {item['source']} bars {item['bars'][0]}-{item['bars'][1]}: "
              f"{row['infilled']['tokens']} + {row['continuation']['tokens']} tokens "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    for k, item in enumerate(chosen):  # the reference: the next sampled piece's true range laid into this one
        other = chosen[(k + 1) % len(chosen)]
        grafted = merge_into_prompt(item["piece"], moved_middle(other, item["span"]), replace_span=item["span"])
        item["row"]["reference"] = {"from": other["source"], **range_stats(grafted, item["span"])}
    with open(args.out / "samples.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")

    print_table(rows, args)
    if args.examples is not None:
        write_examples(args.examples, chosen, args)


def print_table(rows: list[dict], args) -> None:
    columns = {title: [r[name] for r in rows] for name, title in COLUMNS.items()}
    truths, arounds = [r["truth"] for r in rows], [r["around_pch"] for r in rows]
    print()
    print(f"{len(rows)} test-split pieces, {args.bars} bars regenerated in each (checkpoint {args.checkpoint})")
    print()
    print(table_head(columns))

    def line(name: str, of_truth, of_column) -> None:
        print(table_row(name, of_truth, columns, of_column))

    def same(key: str):
        return lambda c: [s[key] for s in c]

    def off(key: str):
        return lambda c: [abs(s[key] - t[key]) for s, t in zip(c, truths)]

    line("pitch-class JS divergence to the truth (bits)", "0",
         lambda c: [ms.js_divergence(s["pch"], t["pch"]) for s, t in zip(c, truths)])
    line("pitch-class JS divergence to the surrounding music (bits)",
         [ms.js_divergence(t["pch"], a) for t, a in zip(truths, arounds)],
         lambda c: [ms.js_divergence(s["pch"], a) for s, a in zip(c, arounds)])
    for key, label in (("density", "note density (notes per quarter)"),
                       ("polyphony", "polyphony (mean notes sounding)")):
        line(label, same(key)(truths), same(key))
        line(f"abs({key} - true {key})", "0", off(key))
    line("fraction of repeated bars", same("repeated_bars")(truths), same("repeated_bars"))
    for seam in ("start", "end"):
        line(f"{seam} seam: top-voice leap (semitones)", same(f"{seam}_leap")(truths), same(f"{seam}_leap"))
        line(f"{seam} seam: onset gap (quarters)", same(f"{seam}_gap")(truths), same(f"{seam}_gap"))
    line("notes in the range", same("notes")(truths), same("notes"))
    generated = ("infilled", "continuation")
    print(f"| ranges left empty | {sum(not t['notes'] for t in truths)} | "
          + " | ".join(str(sum(not r[name]["notes"] for r in rows)) for name in COLUMNS) + " |")
    print("| mean new tokens | — | "
          + " | ".join(f"{mean(r[name]['tokens'] for r in rows):.0f}" for name in generated) + " | — |")
    print("| token error ratio | — | "
          + " | ".join(f"{mean(r[name]['error_ratio'] for r in rows):.4f}" for name in generated) + " | — |")
    print("\nsampling: the product defaults, grammar-constrained; seam: music_stats.seam (drums ignored)")


def write_examples(folder: Path, chosen: list[dict], args) -> None:
    """For the first sampled piece of each of EXAMPLE_COLLECTIONS whose infill has notes: the infilled and the
    true piece around the range (MIDI), the infilled one's piano roll with the range shaded, and a section of
    folder/README.md describing them (refreshed in place; the rest of the README is kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = []
    for item in pick_examples(chosen, lambda item: item["row"]["infilled"]["notes"] > 0):
        first, last = item["bars"]
        stem = f"{example_stem(item['source'])}.bars{first}-{last}"
        start, stop = example_window(item)
        for name, version in (("infilled", "infilled"), ("truth", "truth")):
            (folder / f"{stem}.{name}.mid").write_bytes(window(item["versions"][version], start, stop).dumps_midi())
        roll_png(window(item["versions"]["infilled"], start, stop), [t - start for t in item["span"]],
                 folder / f"{stem}.infilled.png", f"{item['source']}: bars {first}-{last} infilled")
        row = item["row"]
        table.append(f"| `{example_stem(item['source'])}` | {first}-{last} | {row['seed']} | "
                     f"{row['infilled']['notes']} ({row['truth']['notes']}) | "
                     f"{seam_text(row['infilled'], 'start')} ({seam_text(row['truth'], 'start')}) | "
                     f"{seam_text(row['infilled'], 'end')} ({seam_text(row['truth'], 'end')}) |")
        print(f"example: {folder / stem}.infilled.mid")
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    readme.write_text(with_section(text, "## Infill examples", examples_section(table, args)), encoding="utf-8")


def example_window(item: dict) -> tuple[int, int]:
    """Ticks from EXAMPLE_CONTEXT_BARS bars before the range to as many after it (the piece's ends at most)."""
    lines, (first, last) = item["lines"], item["bars"]
    tpq = item["piece"].ticks_per_quarter
    return (fill.to_ticks(lines[max(first - 1 - EXAMPLE_CONTEXT_BARS, 0)][1], tpq),
            fill.to_ticks(lines[min(last + EXAMPLE_CONTEXT_BARS, len(lines) - 1)][1], tpq))


def roll_png(score: symusic.Score, span: list[int], path: Path, title: str) -> None:
    """The piano roll (in beats) with the regenerated range shaded and framed: piano_roll_png marks a prompt's
    end only, so the range is drawn here on the roll it returns."""
    roll = piano_roll(score, unit="beats", width=900, height=360, title=title)
    _, top, _, bottom = roll.plot
    x0, x1 = (roll.x_of(t / score.ticks_per_quarter) for t in span)
    box = (x0, top, x1 + 1, bottom + 1)
    tint = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), (255, 200, 90))
    roll.image.paste(Image.blend(roll.image.crop(box), tint, 0.25), box[:2])
    draw = ImageDraw.Draw(roll.image)
    for x in (x0, x1):
        draw.line([x, top, x, bottom], fill=(200, 120, 0), width=2)
    path.write_bytes(roll.png())


def seam_text(stats: dict, side: str) -> str:
    leap, gap = stats[f"{side}_leap"], stats[f"{side}_gap"]
    return "—" if np.isnan(leap) else f"{leap:.0f} st / {gap:g} q"


def with_section(text: str, heading: str, body: str) -> str:
    """`text` with the section under `heading` (up to the next '## ' heading) replaced by `body`, or `body`
    appended when there is no such section."""
    at = text.find(heading + "\n")
    if at < 0:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + body
    after = text.find("\n## ", at + len(heading))
    return text[:at] + body + ("\n" + text[after + 1:] if after >= 0 else "")


def examples_section(table: list[str], args) -> str:
    command = (f"python benchmarks/infill_stats.py --data {args.data} --checkpoint {args.checkpoint} "
               f"--samples {args.samples} --bars {args.bars} --seed {args.seed} --out {args.out} "
               f"--examples {args.examples}" + (" --no-copy-head" if args.no_copy_head else ""))
    rows = "\n".join(table) if table else "| (none of the collections among the samples) | | | | | |"
    return f"""## Infill examples

Bars regenerated inside real test-split pieces by `{args.checkpoint}` (`MusicGenerator.infill` as `musicmha
infill` runs it: grammar-constrained, temperature 1, no top-k/top-p), from the {args.samples} samples of
`benchmarks/infill_stats.py`: the first sampled Bach chorale, Palestrina mass movement and Essen folk song whose
infilled range has notes. Each file holds the piece from {EXAMPLE_CONTEXT_BARS} bars before the range to
{EXAMPLE_CONTEXT_BARS} after it: `*.infilled.mid` with the range regenerated (notes starting outside it
untouched), `*.infilled.png` its piano roll in beats (the shaded band is the range), `*.truth.mid` the piece as
it really goes. Seams (`music_stats.seam`): the top voice's leap in semitones (st) and the onset gap in quarter
notes (q) from the last onset before the range's start (or end) to the first onset from it; in brackets the
true piece's.

| piece | bars | sample seed | notes in the range (true) | start seam (true) | end seam (true) |
|---|---|---:|---:|---|---|
{rows}

Regenerate (same files, same numbers):

```
{command}
```
"""


if __name__ == "__main__":
    main()
