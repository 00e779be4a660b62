"""Add a part to files that had one: drop a part (the bass) from each file, write it again with
`MusicGenerator.add_part`, and set the new part beside the true one.

    python tests/user_midi.py --out /tmp/um --kinds band --per-kind 4
    python benchmarks/add_part.py --folder /tmp/um [--checkpoint checkpoints/musicmha-1k] [--part bass]
        [--bars 8] [--files 4] [--seed 0] [--threads 2] [--json out.json]

For each file (at most --files), the tracks of the --part family (GM family: bass, piano, guitar, ...; or
drums) are removed, and a part of that family is added over bars 1..--bars (musicmha/generation/add_part.py:
interleaved constrained decoding, no retraining). Per file, for the true part and the new one, in those bars:
notes per bar, lowest and highest pitch, the share of its onsets on an onset of the other parts (both on the
tokenizer's grid of 1/8 beat), and the share of bars with a note; and the seconds per bar the model took. The
table gives each statistic's mean ± standard error over the files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import load_generator, mean_se, run_record, table_head, table_row

from musicmha.data.instruments import program_family
from musicmha.data.midi_io import load_midi, piece_bar_lines
from musicmha.generation.add_part import resolve_instrument

GRID = 8  # onsets per quarter note on the tokenizer's grid


def is_part(track, part: str) -> bool:
    return track.is_drum if part == "drums" else not track.is_drum and program_family(track.program) == part


def part_stats(notes: list, others: list, lines: list[int], tpq: int) -> dict:
    """The statistics of one part's notes in the bars `lines` delimit (start of each bar, then the end)."""
    def grid(tick: int) -> int:
        return round(tick * GRID / tpq)

    bars = len(lines) - 1
    inside = [n for n in notes if lines[0] <= n.time < lines[-1]]
    other_onsets = {grid(n.time) for n in others if lines[0] <= n.time < lines[-1]}
    onsets = {grid(n.time) for n in inside}
    played = {sum(n.time >= line for line in lines[1:-1]) for n in inside}
    pitches = [n.pitch for n in inside]
    return {"notes per bar": len(inside) / bars,
            "lowest pitch": min(pitches) if pitches else float("nan"),
            "highest pitch": max(pitches) if pitches else float("nan"),
            "onsets on the other parts' onsets": len(onsets & other_onsets) / len(onsets) if onsets else float("nan"),
            "bars with a note": len(played) / bars}


def run_file(generator, path: Path, part: str, bars: int, seed: int) -> dict | str:
    """One file's truth and new part, or why it is skipped."""
    score = load_midi(path)
    truth = [t for t in score.tracks if is_part(t, part)]
    if not truth or len(truth) == len(score.tracks):
        return f"no {part} part beside other parts"
    prompt = score.copy()
    prompt.tracks.clear()
    for track in score.tracks:
        if not is_part(track, part):
            prompt.tracks.append(track.copy())
    lines = piece_bar_lines(prompt)
    n = min(bars, len(lines) - 1)
    started = time.perf_counter()
    (result,) = generator.add_part(prompt, instrument=part, bars=(1, n), seed=seed)
    seconds = time.perf_counter() - started
    others = [note for t in prompt.tracks for note in t.notes]
    tpq = score.ticks_per_quarter
    return {"file": path.name, "bars": n, "seconds per bar": seconds / n,
            "truth": part_stats([x for t in truth for x in t.notes], others, lines[:n + 1], tpq),
            "generated": part_stats(list(result.score.tracks[-1].notes), others, lines[:n + 1], tpq)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="MIDI files (e.g. tests/user_midi.py's band)")
    parser.add_argument("--checkpoint", default="checkpoints/musicmha-1k")
    parser.add_argument("--part", default="bass", help="a GM family word (bass, piano, guitar, ...) or drums")
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part != "drums" and program_family(resolve_instrument(args.part).program) != args.part:
        parser.error(f"--part must be a GM family word such as bass or drums, got {args.part!r}")
    generator = load_generator(parser, args.checkpoint)
    rows = []
    for path in sorted(args.folder.glob("*.mid"))[:args.files]:
        row = run_file(generator, path, args.part, args.bars, args.seed)
        if isinstance(row, str):
            print(f"skipped {path.name}: {row}")
            continue
        rows.append(row)
        print(f"{path.name}: {row['bars']} bars, {row['seconds per bar']:.2f} s per bar")
    if not rows:
        parser.error(f"no file in {args.folder} has a {args.part} part beside other parts")
    record = run_record()
    print(f"\n{len(rows)} files, {args.part} dropped and added again over bars 1-{args.bars}; "
          f"{args.checkpoint}; {record['machine']}, {record['torch_threads']} threads, {record['date']}")
    print(f"command: {record['command']}\n")
    print(table_head(["generated"]))
    for name in rows[0]["truth"]:
        print(table_row(name, [r["truth"][name] for r in rows], {"generated": rows},
                        lambda samples, name=name: [r["generated"][name] for r in samples]))
    print(f"| seconds per bar | | {mean_se([r['seconds per bar'] for r in rows])} |")
    if args.json:
        args.json.write_text(json.dumps({"run": record, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
