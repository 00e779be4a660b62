"""Do continuations respect the prompt? Instruments, length and density of 8-bar continuations of user-like MIDI.

    python tests/user_midi.py --out /tmp/user-midi
    python benchmarks/continuation_fidelity.py --files /tmp/user-midi [--checkpoint DIR] [--bars 8] \
        [--variations 4] [--seed 0] [--threads 2] [--compare-legacy] [--json out.json]

For every file of the folder (kinds from its manifest.json, written by tests/user_midi.py), one request
`MusicGenerator.continue_midi(file, bars=8, num_samples=4, seed=0)` with every other setting at its
default, timed on `--threads` CPU threads. With `--compare-legacy` the same request runs again with
`allow_new_instruments=True, allow_early_end=True` and the prompt budget of half the context
(`prompt_tokens=max_seq_len // 2`), roughly the behaviour before issue 14, so one run gives before/after;
with `--compare-parts` with `allow_parts_to_stop=True` (issue 27: the band may fall apart).

Measures, for each of the 4 continuations (GenerationResult.continuation: the new notes alone, in the
prompt's ticks):
- instruments: a note's instrument is its GM program, or "drums" for a drum track. % of new notes on an
  instrument the prompt has (pooled over all new notes), and per request the number of instruments the
  prompt never had.
- bars: bar lines on the prompt's last time signature's grid. The continuation's bars begin at the first
  bar line after the prompt's last onset (the prompt's last bar is its own); it reaches N bars when a new
  note starts in the Nth of them (`bars_onset`: last new onset past that bar line, in bars; a note held
  from an earlier bar does not count, since long final durations would make any short run look complete;
  `bars_sounding`, by the last note-off, is kept in the JSON).
- density: new notes per quarter note from where the continuation starts (the prompt's last note-off, or
  its first new onset if earlier) to its last note-off, divided by the prompt's notes per quarter note in
  its last 8 bars (onsets within 8 bars of the prompt's end; the whole prompt when shorter).
- parts: of the instruments with an onset in the prompt's last 8 bars, the share that plays in the
  continuation; duplicate notes (same instrument, onset and pitch), continuations stuck at the prompt's last
  onset, and the largest chord one instrument stacks on one onset (issue 27, item 0).
- time: wall time of the call (tokenizing the prompt, 4 samples in one batch, decoding), per file.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from pathlib import Path

import torch

from musicmha.generation.music_generator import MusicGenerator
from musicmha.data.midi_io import load_midi

DRUMS = "drums"
TARGETS = {"on_prompt_pct": 99.0, "new_instruments": 0, "reached_pct": 95.0, "density_median": 0.5}


def instrument(track) -> str | int:
    return DRUMS if track.is_drum else int(track.program)


def meter_grid(score) -> tuple[int, int, tuple[int, int]]:
    """(anchor tick, bar length in ticks, (numerator, denominator)) of the prompt's last time signature
    before its end; 4/4 from 0 when it has none."""
    end = max(1, score.end())
    sigs = [ts for ts in score.time_signatures if ts.time < end]
    if not sigs:
        return 0, 4 * score.ticks_per_quarter, (4, 4)
    ts = max(sigs, key=lambda t: t.time)
    return int(ts.time), round(score.ticks_per_quarter * 4 * ts.numerator / ts.denominator), (ts.numerator, ts.denominator)


def prompt_facts(score, bars: int) -> dict:
    notes = [(n.time, n.time + n.duration) for t in score.tracks for n in t.notes]
    last_onset = max(on for on, _ in notes)
    end = max(off for _, off in notes)
    anchor, bar, meter = meter_grid(score)
    first_new_bar = anchor + (math.floor((last_onset - anchor) / bar) + 1) * bar
    window = min(bars * bar, end)
    recent = sum(1 for on, _ in notes if on >= end - window)
    tpq = score.ticks_per_quarter
    # the parts that play in the prompt's last `bars` bars (by onset): the band that should play on
    playing = {instrument(t) for t in score.tracks for n in t.notes if n.time >= last_onset - bars * bar}
    return {"instruments": sorted({instrument(t) for t in score.tracks if len(t.notes)}, key=str),
            "recent_parts": sorted(playing, key=str),
            "end": end, "last_onset": last_onset, "bar": bar, "meter": meter, "first_new_bar": first_new_bar,
            "density": recent / max(window / tpq, 1e-9), "tpq": tpq}


def measure(result, facts: dict, bars: int) -> dict:
    prompt_instruments = set(facts["instruments"])
    cont = result.continuation
    notes, on_prompt, seen = [], 0, set()
    for track in cont.tracks:
        key = instrument(track)
        for n in track.notes:
            notes.append((n.time, n.time + n.duration))
            seen.add(key)
            on_prompt += key in prompt_instruments
    new_instruments = sorted((seen - prompt_instruments), key=str)
    tpq, bar, first = facts["tpq"], facts["bar"], facts["first_new_bar"]
    if notes:
        start = min(facts["end"], min(on for on, _ in notes))
        last_off = max(off for _, off in notes)
        last_on = max(on for on, _ in notes)
        density = len(notes) / max((last_off - start) / tpq, 1e-9)
    else:
        last_off = last_on = first
        density = 0.0
    sounding, onset = (last_off - first) / bar, (last_on - first) / bar
    tempos = [t.qpm for t in cont.tempos]
    keys = [(instrument(t), n.time, n.pitch) for t in cont.tracks for n in t.notes]
    chords: dict[tuple, int] = {}
    for key, time, _ in keys:
        chords[(key, time)] = chords.get((key, time), 0) + 1
    recent = set(facts["recent_parts"])
    return {"new_notes": len(notes), "on_prompt": on_prompt, "new_instruments": new_instruments,
            "parts_kept": len(recent & seen) / len(recent) if recent else None,
            "duplicates": len(keys) - len(set(keys)), "largest_chord": max(chords.values(), default=0),
            "stuck": bool(notes) and last_on <= facts["last_onset"],
            "bars_sounding": round(sounding, 3), "bars_onset": round(onset, 3),
            "reached": onset >= bars - 1, "reached_sounding": sounding > bars - 1, "density": density,
            "tempo_changes": len(tempos), "tempo_range": [min(tempos), max(tempos)] if tempos else None,
            "density_ratio": density / facts["density"] if facts["density"] > 0 else None,
            "new_tokens": len(result.new_token_ids)}


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (math.nan,) * 3
    if len(values) == 1:
        return (values[0],) * 3
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


def summarize(rows: list[dict]) -> dict:
    samples = [s for r in rows for s in r["samples"]]
    new = sum(s["new_notes"] for s in samples)
    ratios = sorted(s["density_ratio"] for s in samples if s["density_ratio"] is not None)
    counts = [len(s["new_instruments"]) for s in samples]
    times = [r["seconds"] for r in rows]
    q1, med, q3 = quartiles(ratios)
    return {"files": len(rows), "requests": len(samples), "new_notes": new,
            "on_prompt_pct": 100.0 * sum(s["on_prompt"] for s in samples) / new if new else math.nan,
            "requests_with_new_instruments": sum(c > 0 for c in counts),
            "new_instruments_mean": statistics.fmean(counts) if counts else math.nan,
            "new_instruments_max": max(counts, default=0),
            "requests_without_notes": sum(s["new_notes"] == 0 for s in samples),
            "parts_kept_mean": statistics.fmean(kept) if (kept := [s["parts_kept"] for s in samples
                                                                    if s.get("parts_kept") is not None]) else math.nan,
            "duplicate_pct": 100.0 * sum(s.get("duplicates", 0) for s in samples) / new if new else math.nan,
            "requests_with_duplicates": sum(s.get("duplicates", 0) > 0 for s in samples),
            "stuck": sum(bool(s.get("stuck")) for s in samples),
            "largest_chord": max((s.get("largest_chord", 0) for s in samples), default=0),
            "reached_pct": 100.0 * sum(s["reached"] for s in samples) / len(samples) if samples else math.nan,
            "bars_median": statistics.median(s["bars_onset"] for s in samples) if samples else math.nan,
            "tempo_changes_mean": statistics.fmean(s["tempo_changes"] for s in samples) if samples else math.nan,
            "density_q1": q1, "density_median": med, "density_q3": q3,
            "density_buckets": {label: sum(lo <= x < hi for x in ratios) for label, lo, hi in
                                (("<0.25", 0, 0.25), ("0.25-0.5", 0.25, 0.5), ("0.5-1", 0.5, 1.0),
                                 ("1-2", 1.0, 2.0), (">=2", 2.0, math.inf))},
            "seconds_median": statistics.median(times) if times else math.nan,
            "seconds_max": max(times, default=math.nan)}


def table(summaries: dict[str, dict[str, dict]], kinds: list[str]) -> str:
    lines = ["| kind | setting | files | new notes on prompt's instruments | new instruments per request "
             "(mean / max; requests with any) | requests reaching 8 bars (median bars to last onset) | density ratio "
             "median [q1-q3] | tempo changes written per request (mean) | s per request of 4 (median / max) | "
             "parts of the last 8 bars that play on (mean) | duplicate notes (% of new; requests with any) | "
             "stuck at the prompt's last onset | largest chord of one instrument |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in [*kinds, "all"]:
        for setting, by_kind in summaries.items():
            s = by_kind[kind]
            if not s["files"]:
                continue
            lines.append(
                f"| {kind if kind != 'all' else '**all**'} | {setting} | {s['files']} | {s['on_prompt_pct']:.1f}% | "
                f"{s['new_instruments_mean']:.2f} / {s['new_instruments_max']} ; {s['requests_with_new_instruments']}"
                f"/{s['requests']} | {s['reached_pct']:.0f}% ({s['bars_median']:.1f}) | "
                f"{s['density_median']:.2f} [{s['density_q1']:.2f}-{s['density_q3']:.2f}] | "
                f"{s['tempo_changes_mean']:.1f} | "
                f"{s['seconds_median']:.1f} / {s['seconds_max']:.1f} | {s['parts_kept_mean']:.2f} | "
                f"{s['duplicate_pct']:.1f}% ; {s['requests_with_duplicates']} | {s['stuck']} | {s['largest_chord']} |")
    return "\n".join(lines)


def report(rows: dict[str, list[dict]], bars: int) -> dict:
    """Print the table, the density distribution and the targets; return the summaries."""
    kinds = list(dict.fromkeys(r["kind"] for rs in rows.values() for r in rs))
    # Besides the kinds: prompts with a drum track vs without (the model never saw drums in training).
    groups = {"prompt has drums": lambda r: DRUMS in r["prompt_instruments"],
              "prompt has no drums": lambda r: DRUMS not in r["prompt_instruments"]}
    summaries = {name: {kind: summarize([r for r in rs if r["kind"] == kind]) for kind in kinds}
                 | {g: summarize([r for r in rs if test(r)]) for g, test in groups.items()} | {"all": summarize(rs)}
                 for name, rs in rows.items()}
    print(table(summaries, [*kinds, *groups]))
    print()
    for name, by_kind in summaries.items():
        print(f"density ratio distribution ({name}, all {by_kind['all']['requests']} requests): "
              + ", ".join(f"{k}: {v}" for k, v in by_kind["all"]["density_buckets"].items())
              + f"; requests without a new note: {by_kind['all']['requests_without_notes']}")
    for name, by_kind in summaries.items():
        s = by_kind["all"]
        print(f"targets ({name}): on prompt {s['on_prompt_pct']:.1f}% (>= 99%), new instruments max "
              f"{s['new_instruments_max']} (0), reaching {bars} bars {s['reached_pct']:.0f}% (>= 95%), "
              f"density median {s['density_median']:.2f}x (>= 0.5x)")
    return summaries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=Path, help="folder from tests/user_midi.py (with manifest.json)")
    ap.add_argument("--checkpoint", default=None, help="model folder (default: the shipped checkpoint)")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--variations", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare-legacy", action="store_true",
                    help="also run allow_new_instruments=True, allow_early_end=True, prompt_tokens=context/2")
    ap.add_argument("--legacy-only", action="store_true",
                    help="only the legacy setting (to run it on a subset beside a full default run)")
    ap.add_argument("--compare-parts", action="store_true",
                    help="also run allow_parts_to_stop=True: the parts of the prompt's last bars may drop out")
    ap.add_argument("--limit", type=int, default=None, help="first N files only (a quick look)")
    ap.add_argument("--resume", action="store_true", help="keep the files already in --json and run the rest")
    ap.add_argument("--kinds", default=None, help="comma-separated kinds to run (default: all)")
    ap.add_argument("--per-kind", type=int, default=None, help="first N files of each kind only")
    ap.add_argument("--json", type=Path, default=None, help="write every file's and sample's numbers here")
    ap.add_argument("--from-json", type=Path, nargs="+", default=None,
                    help="print the tables of earlier --json runs (e.g. a full default run and a legacy run on a "
                         "subset) without generating: each setting over all its files, then every setting over "
                         "the files they share")
    args = ap.parse_args(argv)
    if args.from_json:
        rows = {}
        for path in args.from_json:
            for name, rs in json.loads(path.read_text())["rows"].items():
                rows.setdefault(name, []).extend(rs)
        report(rows, args.bars)
        shared = set.intersection(*({r["file"] for r in rs} for rs in rows.values()))
        if len(rows) > 1 and any(len(rs) != len(shared) for rs in rows.values()):
            print(f"\nthe {len(shared)} files every setting ran:\n")
            report({name: [r for r in rs if r["file"] in shared] for name, rs in rows.items()}, args.bars)
        return 0
    if args.files is None:
        ap.error("--files is required (unless --from-json)")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    manifest = json.loads((args.files / "manifest.json").read_text())
    entries = [e for e in manifest["files"] if args.kinds is None or e["kind"] in args.kinds.split(",")]
    if args.per_kind:
        entries = [e for e in entries if [x["kind"] for x in entries].index(e["kind"]) + args.per_kind
                   > entries.index(e)]
    entries = entries[:args.limit] if args.limit else entries
    # Kinds in turn (the first file of each kind, then the second...), so an interrupted run covers every kind.
    kind_index = {e["file"]: [x["kind"] for x in entries[:i]].count(e["kind"]) for i, e in enumerate(entries)}
    entries = sorted(entries, key=lambda e: kind_index[e["file"]])
    generator = MusicGenerator.from_pretrained(args.checkpoint, device="cpu")
    context = generator.model.config.max_seq_len
    legacy = {"allow_new_instruments": True, "allow_early_end": True, "prompt_tokens": context // 2}
    settings = {"legacy": legacy} if args.legacy_only else {"default": {}}
    if args.compare_legacy and not args.legacy_only:
        settings["legacy"] = legacy
    if args.compare_parts:
        settings["parts may stop"] = {"allow_parts_to_stop": True}
    rows: dict[str, list[dict]] = {name: [] for name in settings}
    if args.resume and args.json and args.json.is_file():  # keep what an interrupted run measured
        for name, rs in json.loads(args.json.read_text())["rows"].items():
            if name in rows:
                rows[name] = rs
    for entry in entries:
        path = args.files / entry["file"]
        facts = prompt_facts(load_midi(path), args.bars)
        for name, extra in settings.items():
            if any(r["file"] == entry["file"] for r in rows[name]):
                continue
            started = time.perf_counter()
            results = generator.continue_midi(path, bars=args.bars, num_samples=args.variations, seed=args.seed,
                                              **extra)
            seconds = time.perf_counter() - started
            samples = [measure(r, facts, args.bars) for r in results]
            rows[name].append({"file": entry["file"], "kind": entry["kind"], "setting": name, "seconds": seconds,
                               "prompt_instruments": facts["instruments"], "prompt_density": facts["density"],
                               "meter": facts["meter"], "samples": samples})
            print(f"{entry['kind']:9s} {entry['file'][:44]:44s} {name:7s} {seconds:6.1f} s  "
                  f"on prompt {sum(s['on_prompt'] for s in samples)}/{sum(s['new_notes'] for s in samples)}  "
                  f"new instr {[len(s['new_instruments']) for s in samples]}  "
                  f"bars {[s['bars_onset'] for s in samples]}  tempi {[s['tempo_changes'] for s in samples]}  "
                  f"density x{[round(s['density_ratio'] or 0, 2) for s in samples]}", flush=True)
        if args.json:  # after every file, so an interrupted run keeps what it measured (--from-json reads it)
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "partial": True,
                                             "rows": rows}, indent=1, default=str) + "\n")
    print()
    summaries = report(rows, args.bars)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "targets": TARGETS,
                                         "summaries": summaries, "rows": rows}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
