"""MIDI files that look like what users bring, made reproducibly from pieces the model was not trained on.

    python tests/user_midi.py --out /tmp/user-midi [--corpus /tmp/um/corpus] [--per-kind 6] [--seed 0]

`--corpus` is a folder built by `musicmha corpus` (its manifest gives each piece's split); only `test`
split pieces are used. When the folder has no manifest yet, it is built first with

    musicmha corpus --out CORPUS --collections bach,ryansMammoth --limit 200 --workers 1

(the first 200 files of each collection: 8 Bach chorales and 11 fiddle tunes land in the test split).
Six kinds, `--per-kind` files each, listed with their kind, source and shape in `OUT/manifest.json`:

- arranged: a test piece's melody over mma's drums, bass and comping (musicmha.data.arrange), as the corpus's
  arrangements collection makes them;
- band: hand-rolled pop arrangements written with pretty_midi: a melody on a GM lead, a bass line, block
  chords on pads/strings/piano and a drum kit (kick, snare, hats, crashes on channel 10);
- piano: test pieces played on piano in two hands with sustain pedal (CC64), onsets jittered by 10-30 ms,
  varied velocities, rubato through a tempo change every bar, 480 or 960 ticks per quarter;
- long: 4-8 minute files (a band song of many sections, an arrangement repeated, a suite of test pieces on
  piano);
- foreign: test pieces written with mido as other programs write them: running status, note-on velocity 0
  as note-off, odd resolutions (96, 384, 120, 192), format 0 and format 1, program changes in the middle of
  a track, zero-length drum notes, tempo maps with a change every beat, GM reset sysex, markers;
- game: game-soundtrack loops: 16th-note arpeggios on synth leads (GM 80-87), synth bass and drums,
  a loop repeated 4-8 times.

The same corpus and seed give the same files (byte for byte). The fixtures of tests/data/test_user_midi.py
and the input of benchmarks/continuation_fidelity.py and benchmarks/finetune_compare.py. This module plans
the set and writes it; the music comes from user_midi_songs.py (band, game) and user_midi_played.py (test
pieces played on piano or written as other programs write them).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mido
import symusic

from musicmha.data.midi_io import load_midi
from user_midi_played import (concatenate, expressive_piano, foreign_file, meter_of, repeat_score, voices,
                              with_left_hand)
from user_midi_songs import band_song, game_loop, write_pretty

KINDS = ("arranged", "band", "piano", "long", "foreign", "game")
CORPUS_COMMAND = ["musicmha", "corpus", "--collections", "bach,ryansMammoth", "--limit", "200", "--workers", "1"]


@dataclass
class Made:
    name: str
    kind: str
    source: str
    description: str
    write: Callable[[Path], None]


def test_pieces(corpus: Path) -> list[tuple[str, Path]]:
    """(id, MIDI path) of the corpus's test-split pieces, sorted by id within each collection, taken from
    the collections in turn."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    pieces = [p for p in manifest["pieces"] if p.get("split") == "test" and p.get("path")
              and p.get("collection") != "arrangements"]
    by_collection: dict[str, list[dict]] = {}
    for p in sorted(pieces, key=lambda p: p["id"]):
        by_collection.setdefault(p["collection"], []).append(p)
    # Round robin over collections, so every kind gets chorales and fiddle tunes alike.
    order = [p for group in zip(*_padded(list(by_collection.values()))) for p in group if p is not None]
    return [(p["id"], corpus / p["path"]) for p in order]


def _padded(groups: list[list]) -> list[list]:
    longest = max((len(g) for g in groups), default=0)
    return [g + [None] * (longest - len(g)) for g in groups]


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.split("/")[-1].rsplit(".", 1)[0]).strip("-")[:40]


def pretty_midi_file(name: str, kind: str, song: tuple, resolution: int, description: str) -> Made:
    """A file of a song from user_midi_songs ((parts, qpm, meter), made without a source piece), written with
    pretty_midi at `resolution` ticks per quarter."""
    parts, qpm, meter = song
    return Made(name, kind, "pretty_midi", description, lambda path: write_pretty(parts, qpm, meter, path, resolution))


def score_file(name: str, kind: str, source: str, description: str, score: symusic.Score) -> Made:
    """A file of a score made from `source` (test pieces), written by symusic."""
    return Made(name, kind, source, description, lambda path: score.dump_midi(str(path)))


def plan_files(sources: list[tuple[str, symusic.Score]], per_kind: int, seed: int,
               kinds: tuple[str, ...] = KINDS) -> list[Made]:
    """Every file to write, as closures (so a test can build a few without the corpus)."""
    made: list[Made] = []

    def rng(kind: str, i: int) -> random.Random:
        return random.Random(f"{seed}:{kind}:{i}")

    def pick(i: int, kind: str) -> tuple[str, symusic.Score]:
        return sources[(i + 3 * KINDS.index(kind)) % len(sources)]

    if "arranged" in kinds and sources:
        from musicmha.data.arrange import arrange
        from musicmha.errors import MusicmhaError

        count = 0
        for piece_id, score in sources:
            if count >= per_kind:
                break
            try:
                arranged, plan = arrange(score, piece_id, seed)
            except MusicmhaError:
                continue
            count += 1
            made.append(score_file(f"arranged-{count:02d}-{slug(piece_id)}.mid", "arranged", piece_id,
                                   f"{plan.groove} at {plan.tempo} qpm, lead program {plan.program}", arranged))
    if "band" in kinds:
        for i in range(per_kind):
            r = rng("band", i)
            parts, qpm, meter = song = band_song(r, bars=r.choice((16, 24, 32)), sections=2)
            resolution = (220, 480, 384)[i % 3]
            made.append(pretty_midi_file(f"band-{i + 1:02d}.mid", "band", song, resolution,
                                         f"{meter[0]}/{meter[1]} at {qpm:g} qpm, programs "
                                         f"{[p.program for p in parts]}, tpq {resolution}"))
    if "piano" in kinds and sources:
        for i in range(per_kind):
            r = rng("piano", i)
            piece_id, score = pick(i, "piano")
            tpq = (480, 960)[i % 2]
            qpm = r.uniform(60, 100)
            piano = expressive_piano(with_left_hand(score, r), meter_of(score), r, tpq, qpm)
            made.append(score_file(f"piano-{i + 1:02d}-{slug(piece_id)}.mid", "piano", piece_id,
                                   f"two hands, pedal, rubato around {qpm:.0f} qpm, tpq {tpq}", piano))
    if "long" in kinds:
        for i in range(per_kind):
            r = rng("long", i)
            which = i % 3
            if which == 0 or not sources:
                parts, qpm, meter = song = band_song(r, sections=4, seconds=r.uniform(4.2, 7.5) * 60)
                bars = math.ceil(max(s + d for s, d, _, _ in parts[-1].notes) / meter[0])
                made.append(pretty_midi_file(f"long-{i + 1:02d}-band.mid", "long", song, 480,
                                             f"band song, {bars} bars {meter[0]}/{meter[1]} at {qpm:g} qpm"))
            elif which == 1:
                from musicmha.data.arrange import arrange
                from musicmha.errors import MusicmhaError

                for k in range(len(sources)):
                    piece_id, score = sources[(i + k) % len(sources)]
                    try:
                        arranged, plan = arrange(score, piece_id, seed + 1)
                    except MusicmhaError:
                        continue
                    break
                else:
                    continue
                seconds = arranged.end() / arranged.ticks_per_quarter * 60 / plan.tempo
                times = max(2, math.ceil(r.uniform(4.2, 6.0) * 60 / seconds))
                long_score = repeat_score(arranged, times)
                made.append(score_file(f"long-{i + 1:02d}-{slug(piece_id)}-x{times}.mid", "long", piece_id,
                                       f"arrangement ({plan.groove}, {plan.tempo} qpm) played {times} times",
                                       long_score))
            else:
                qpm = r.uniform(72, 96)
                suite, ids, total = [], [], 0.0
                meter = None
                for k in range(4 * len(sources)):  # round again when too few pieces share the meter
                    piece_id, score = sources[(2 * i + k) % len(sources)]
                    if meter is not None and meter_of(score) != meter:
                        continue
                    meter = meter_of(score)
                    parts = with_left_hand(score, r)
                    suite.append(parts)
                    ids.append(piece_id)
                    total += max(s + d for part in parts for s, d, _, _ in part) * 60 / qpm
                    if total > 250:
                        break
                piano = expressive_piano(concatenate(suite, meter), meter, r, 480, qpm)
                made.append(score_file(f"long-{i + 1:02d}-piano-suite.mid", "long", ",".join(ids),
                                       f"{len(suite)} pieces in a row on piano (pedal, rubato) around {qpm:.0f} qpm",
                                       piano))
    if "foreign" in kinds and sources:
        for i in range(per_kind):
            r = rng("foreign", i)
            piece_id, score = pick(i, "foreign")
            tpq = (96, 384, 120, 192)[i % 4]
            fmt = i % 2
            drums = i % 3 == 2
            made.append(Made(f"foreign-{i + 1:02d}-{slug(piece_id)}-f{fmt}-tpq{tpq}.mid", "foreign", piece_id,
                             f"mido, format {fmt}, tpq {tpq}, tempo change every beat, mid-track program change"
                             + (", zero-length drum hits" if drums else ""),
                             lambda path, a=(voices(score), meter_of(score), r, tpq, fmt, drums):
                             foreign_file(a[0], a[1], a[2], path, a[3], a[4], a[5])))
    if "game" in kinds:
        for i in range(per_kind):
            r = rng("game", i)
            parts, qpm, meter = song = game_loop(r, loops=r.choice((4, 6, 8)))
            resolution = (480, 96, 192)[i % 3]
            made.append(pretty_midi_file(f"game-{i + 1:02d}.mid", "game", song, resolution,
                                         f"{meter[0]}/{meter[1]} loop at {qpm:g} qpm, programs "
                                         f"{[p.program for p in parts]}, tpq {resolution}"))
    return made


def describe(path: Path) -> dict:
    score = load_midi(path)
    seconds = symusic.Score.from_file(str(path), ttype="second").end()
    raw = mido.MidiFile(str(path))
    return {"tpq": score.ticks_per_quarter, "format": raw.type, "tracks": len(score.tracks),
            "notes": score.note_num(), "seconds": round(float(seconds), 1),
            "programs": sorted({-1 if t.is_drum else t.program for t in score.tracks if len(t.notes)}),
            "tempo_changes": len(score.tempos),
            "time_signature": "{}/{}".format(*meter_of(score))}


def ensure_corpus(corpus: Path) -> None:
    if (corpus / "manifest.json").is_file():
        return
    command = [*CORPUS_COMMAND[:2], "--out", str(corpus), *CORPUS_COMMAND[2:]]
    print("building the source corpus:", " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for the MIDI files and manifest.json")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/um/corpus"),
                    help="a `musicmha corpus` folder (built with the command above when it has no manifest)")
    ap.add_argument("--per-kind", type=int, default=6, help="files of each kind (default 6: 36 files)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS))
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    needs_corpus = {"arranged", "piano", "long", "foreign"} & set(kinds)
    sources = []
    if needs_corpus:
        ensure_corpus(args.corpus)
        sources = [(piece_id, load_midi(path)) for piece_id, path in test_pieces(args.corpus)]
        if not sources:
            raise SystemExit(f"{args.corpus}: no test-split pieces in its manifest")
    args.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for item in plan_files(sources, args.per_kind, args.seed, kinds):
        path = args.out / item.name
        item.write(path)
        entry = {"file": item.name, "kind": item.kind, "source": item.source, "description": item.description,
                 **describe(path)}
        entries.append(entry)
        print(f"{item.kind:9s} {item.name:48s} {entry['seconds']:6.1f} s {entry['notes']:6d} notes  {item.description}")
    (args.out / "manifest.json").write_text(json.dumps(
        {"seed": args.seed, "corpus": str(args.corpus), "test_pieces": [p for p, _ in sources],
         "files": entries}, indent=1) + "\n")
    counts = {k: sum(e["kind"] == k for e in entries) for k in kinds}
    print(f"{len(entries)} files: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
