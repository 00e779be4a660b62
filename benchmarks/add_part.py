"""Add a part to files that had one: drop a part (the bass, the drums, a comping family) from each file, write
it again with `MusicGenerator.add_part`, and set the new part beside the true one and a retrieved one.

    python tests/user_midi.py --out /tmp/um --kinds band --per-kind 4
    python benchmarks/add_part.py --folder /tmp/um [--checkpoint checkpoints/musicmha-1k] [--part bass]
        [--bars 4] [--files 4] [--seed 0] [--threads 2] [--json out.json]
    python benchmarks/add_part.py --pieces-from data/tokens/test.pieces.jsonl [--corpus data/corpus] ...

Files: the MIDI files of --folder (the first --files, sorted by name), or held-out arrangements: the first
--files pieces of --pieces-from under arrangements/ that have the part (their MIDI under --corpus; tracks
named after mma's roles, see benchmarks/part_retrieval.py). --part: drums, or a GM family (bass, piano,
guitar, organ, ...): in a folder the part is every track of the family, in the arrangements the Bass/Walk
tracks of the bass family, or the comping tracks of the family. The part's tracks are removed and a part on
the program of the truth's largest track (the kit for drums) is added over bars 1..--bars
(musicmha/generation/add_part.py) in the checkpoint's layout: a model trained on LEAD part rows interleaves
the part a bar behind the other parts (it hears its own bar whole and the next one up to its position), one
trained on AFTER rows writes it after the other parts of its bars (part_after.py), any other model interleaves
it with them (no look-ahead); --layout interleaved forces the last on any model.

Measures (musicmha/evaluation/part_measures.py), per file, for the truth, the new part and the retrieval
baseline, in those bars: notes per bar, lowest and highest pitch, onsets on the other parts' onsets and bars
with a note (as before); for pitched parts the share of notes on a chord tone of their bar's chord, and for
a bass the share of bars whose lowest note is the chord's root, where the chord is the one heard in the other
parts (detected from their notes: the arrangements' chord symbols are not stored); for drums the onset F1
against the true onsets on a 1/16-note grid (micro-averaged over the bars) and the groove consistency (mean
cosine between successive bars' onset histograms); the notes against the truth's. And the NLL of the true
part given the other parts' past, in add_part's interleaved order, and given the other parts ahead of it, in
the model's trained layout (musicmha/evaluation/part_nll.py), in nats per token of the part and per note. Retrieval (--retrieval-pool
training arrangements, --retrieval-from): the nearest training part by the other parts' onset histogram,
copied and transposed (part_retrieval.py). The table gives each measure's mean ± standard error over the files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import load_generator, mean_se, run_record, table_head, table_row
from part_retrieval import Pool, arrangements, copy_part, first_root, part_program, pitched, split_part

from musicmha.data.instruments import program_family
from musicmha.data.midi_io import load_midi, piece_bar_lines
from musicmha.data.vocabulary import DRUMS
from musicmha.evaluation import part_measures as pm
from musicmha.evaluation.part_nll import part_after_nll, part_nll
from musicmha.generation.add_part import resolve_instrument
from musicmha.generation.part_after import AFTER, INTERLEAVED, LEAD

COLUMNS = {"generated": "add_part", "retrieval": "retrieval (nearest train part)"}
LAYOUT_NAMES = {AFTER: "after the other parts (hears them all)", LEAD: "a bar behind the other parts (lead)",
                INTERLEAVED: "interleaved (no look-ahead)"}


def measures(notes: list, truth: list, others: list, chords: list, lines: list[int], tpq: int, part: str) -> dict:
    """Every measure of one part's notes in the bars `lines` delimit (start of each bar, then the end)."""
    stats = pm.part_stats(notes, others, lines, tpq)
    if part == "drums":
        stats["onset F1 vs the truth (1/16 grid)"] = pm.onset_f1(notes, truth, lines, tpq)
        stats["groove consistency"] = pm.groove_consistency(notes, lines, tpq)
    else:
        stats["chord-tone share"] = pm.chord_tone_share(notes, chords, lines)
        if part == "bass":
            stats["bars whose lowest note is the root"] = pm.root_share(notes, chords, lines)
    stats["notes / truth's notes"] = pm.density_ratio(notes, truth, lines)
    return stats


def run_file(generator, name: str, score, part: str, bars: int, seed: int, roles: bool,
             pool: Pool | None, layout: str) -> dict | str:
    """One file's truth, new part and retrieved part with their measures, or why it is skipped."""
    prompt, alone = split_part(score, part, roles)
    if not alone.note_num() or not prompt.note_num():
        return f"no {part} part beside other parts"
    lines = piece_bar_lines(prompt)
    n = min(bars, len(lines) - 1)
    lines = lines[:n + 1]
    program = part_program(alone)
    started = time.perf_counter()
    (result,) = generator.add_part(prompt, instrument="drums" if program == DRUMS else program, bars=(1, n),
                                   seed=seed, layout=layout)
    seconds = time.perf_counter() - started
    tpq = score.ticks_per_quarter
    others = [note for t in prompt.tracks for note in t.notes]
    chords = pm.bar_chords(pitched(prompt), lines)
    truth = [x for t in alone.tracks for x in t.notes]
    parts = {"truth": truth, "generated": list(result.score.tracks[-1].notes)}
    row = {"file": name, "bars": n, "program": program, "chords": chords, "seconds per bar": seconds / n}
    candidate = pool.nearest(prompt, lines) if pool is not None else None
    if candidate is not None:
        parts["retrieval"] = copy_part(candidate, lines, tpq, first_root(chords))
        row["retrieved"] = candidate.path
    for key, notes in parts.items():
        row[key] = measures(notes, truth, others, chords, lines, tpq, part)
    started = time.perf_counter()
    row["nll"] = part_nll(generator, prompt, alone, program, 1, n)
    if generator.trained_part_layout == AFTER:
        row["nll given all"] = part_after_nll(generator, prompt, alone, program, 1, n)
    elif generator.trained_part_layout == LEAD:
        row["nll given all"] = part_nll(generator, prompt, alone, program, 1, n, lead=True)
    row["nll seconds"] = time.perf_counter() - started
    return row


def sources(args, manifest: dict | None) -> list[tuple[str, Path]]:
    """(name, MIDI path) of the files to try, in order."""
    if args.pieces_from is None:
        return [(p.name, p) for p in sorted(args.folder.glob("*.mid"))[:args.files]]
    return [(path, args.corpus / path) for path in arrangements(args.pieces_from, manifest, args.part)]


def print_table(rows: list[dict]) -> None:
    """The measures' table: truth, then each column some row has, mean ± standard error over the files."""
    present = {k: v for k, v in COLUMNS.items() if any(k in r for r in rows)}
    print(table_head(present.values()))
    for name in rows[0]["truth"]:
        print(table_row(name, [r["truth"][name] for r in rows], {k: (k, rows) for k in present},
                        lambda column, name=name: [r[column[0]][name] for r in column[1] if column[0] in r]))
    print(f"| seconds per bar | | {mean_se([r['seconds per bar'] for r in rows])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=None, help="MIDI files (e.g. tests/user_midi.py's band)")
    parser.add_argument("--pieces-from", type=Path, default=None,
                        help="a split's pieces file (data/tokens/test.pieces.jsonl): its arrangements, not --folder")
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="the corpus: MIDI and manifest")
    parser.add_argument("--checkpoint", default="checkpoints/musicmha-1k")
    parser.add_argument("--part", default="bass", help="a GM family word (bass, piano, guitar, ...) or drums")
    parser.add_argument("--bars", type=int, default=4)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=("trained", INTERLEAVED), default="trained",
                        help="how add_part writes the part: the layout the checkpoint was trained on (interleaved "
                             "for a model trained without part rows), or interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--retrieval-from", type=Path, default=Path("data/tokens/train.pieces.jsonl"),
                        help="the pieces file retrieval picks training arrangements from")
    parser.add_argument("--retrieval-pool", type=int, default=200, help="training arrangements per meter (0: none)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if (args.folder is None) == (args.pieces_from is None):
        parser.error("give --folder or --pieces-from (not both)")
    torch.set_num_threads(args.threads)
    if args.part != "drums" and program_family(resolve_instrument(args.part).program) != args.part:
        parser.error(f"--part must be a GM family word such as bass or drums, got {args.part!r}")
    manifest_path = args.corpus / "manifest.json"
    manifest = None
    if manifest_path.is_file():
        manifest = {p["path"]: p for p in json.loads(manifest_path.read_text())["pieces"]}
    elif args.pieces_from is not None:
        parser.error(f"{manifest_path} not found: --pieces-from needs the corpus")
    pool = None
    if args.retrieval_pool > 0 and manifest is not None and args.retrieval_from.is_file():
        pool = Pool(args.corpus, args.retrieval_from, manifest, args.part, args.bars, args.retrieval_pool)
    else:
        print("no retrieval baseline: --retrieval-pool 0, or no corpus manifest or --retrieval-from file")
    generator = load_generator(parser, args.checkpoint)
    layout = generator.trained_part_layout if args.layout == "trained" and generator.trained_part_layout \
        else INTERLEAVED
    rows = []
    for name, path in sources(args, manifest):
        if len(rows) >= args.files:
            break
        row = run_file(generator, name, load_midi(path), args.part, args.bars, args.seed,
                       args.pieces_from is not None, pool, layout)
        if isinstance(row, str):
            print(f"skipped {name}: {row}")
            continue
        rows.append(row)
        print(f"{name}: {row['bars']} bars, {row['seconds per bar']:.2f} s per bar, "
              f"retrieved {row.get('retrieved', '-')}")
    if not rows:
        parser.error(f"no file has a {args.part} part beside other parts")
    record = run_record()
    where = args.folder if args.pieces_from is None else f"arrangements of {args.pieces_from}"
    print(f"\n{len(rows)} files of {where}, {args.part} dropped and added again over bars 1-{args.bars}; "
          f"{args.checkpoint}, add_part {LAYOUT_NAMES[layout]}; {record['machine']}, "
          f"{record['torch_threads']} threads, {record['date']}")
    print(f"command: {record['command']}\n")
    print_table(rows)
    nll = [r["nll"] for r in rows]
    after = [r["nll given all"] for r in rows if "nll given all" in r]
    print(f"\n| NLL of the true {args.part} | given the other parts' past (interleaved) | given the other parts "
          f"({generator.trained_part_layout or 'untrained'}) |\n|---|---:|---:|")
    for unit, key in (("nats per token of the part", "nll"), ("nats per note", "nats per note")):
        given_all = mean_se([x[key] for x in after]) if after else "n/a (not trained on part rows)"
        print(f"| {args.checkpoint}, {unit} | {mean_se([x[key] for x in nll])} | {given_all} |")
    print(f"\n{sum(x['tokens'] for x in nll)} part tokens scored ({sum(x['notes'] for x in nll)} notes); "
          f"{sum(x['refused'] for x in nll)} of them add_part's mask would not have allowed")
    if args.json:
        args.json.write_text(json.dumps({"run": record, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
