"""Do a continuation's new notes land in the right voice? Tracks that share a program, in the model's output.

    python benchmarks/voice_fidelity.py [--checkpoint DIR] [--bars 4] [--variations 2] [--cut 0.5] [--seed 0]
        [--threads 2] [--midi FILE_OR_FOLDER ...] [--split data/tokens/test.pieces.jsonl --corpus data/corpus
        --per-collection 2] [--json out.json]

Pieces: the bundled prompts (data/prompts), --midi files or folders, and with --split the first
--per-collection pieces of each collection in a token split's list (the test split: held out), each with two or
more tracks of one program. The split column: where the piece was in training (--tokens/*.pieces.jsonl).

Each piece is cut at the bar line --cut of the way in (the notes that start before it are the prompt) and
continued for the bars the truth has after the cut, at most --bars: `continue_midi(prompt, bars=n,
num_samples=--variations, seed=--seed)`, whose new notes the library has put into the prompt's tracks
(musicmha/data/voices.py). For each program that tracks share, the prompt's last --bars bars give each
track's range and the tracks' order (by mean pitch). Measured on the new notes of those tracks:
- range: the share within their own track's range ± --tolerance semitones (a track silent there: outside);
- order: at each new onset where two or more ordered tracks sound (a track's pitches: its sounding notes
  attacked last, held ones included; a note held under a newer one, a tie or a corpus artefact of 100
  quarters, is left out), whether each adjacent pair keeps the order; a pair crosses when some pitch of the
  lower track is above some pitch of the upper one (one note each: the usual crossing; a unison is none);
- crossings per bar: crossed pairs over those onsets, per bar; and those onsets per bar (few: one voice
  plays alone, and keeps its order trivially); new notes per bar; the largest share one track got of them.
Each cell: the model's output · the truth re-assigned (the real bars after the cut merged into one track per
program and given to the tracks by the library: the assignment's own error) · the truth as written.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import symusic
import torch
from common import run_record

from musicmha.data.midi_io import add_notes, bar_starts, load_midi

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"bach_bwv66.6_chorale": "bach/bwv66.6.mid", "beethoven_op18no1_quartet": "beethoven/opus18no1/movement1.mid",
           "joplin_maple_leaf_rag_piano": "joplin/maple_leaf_rag.mid",
           "monteverdi_madrigal_3_1": "monteverdi/madrigal.3.1.mid", "palestrina_agnus": "palestrina/Agnus_01.mid"}
KINDS = ("output", "reassigned", "truth")


def shared_groups(score: symusic.Score) -> list[list[int]]:
    """Track indices of each pitched program that two or more tracks with notes share (its empty tracks too:
    the library may put new notes there)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for index, track in enumerate(score.tracks):
        if not track.is_drum:
            groups[track.program].append(index)
    return [g for g in groups.values() if sum(len(score.tracks[i].notes) > 0 for i in g) >= 2]


def reference(score: symusic.Score, group: list[int], start: int, cut: int) -> dict:
    """The tracks' ranges {index: (low, high)} and order (highest mean pitch first) in the ticks [start, cut)."""
    pitches = {i: [n.pitch for n in score.tracks[i].notes if start <= n.time < cut] for i in group}
    pitches = {i: p for i, p in pitches.items() if p}
    return {"ranges": {i: (min(p), max(p)) for i, p in pitches.items()},
            "order": sorted(pitches, key=lambda i: -sum(pitches[i]) / len(pitches[i]))}


def new_per_track(score: symusic.Score, prompt: symusic.Score) -> list[list]:
    """The notes of each of `score`'s first len(prompt.tracks) tracks that the prompt's track lacks."""
    out = []
    for track, before in zip(score.tracks, prompt.tracks):
        seen = Counter((n.time, n.duration, n.pitch) for n in before.notes)
        fresh = []
        for note in track.notes:
            key = (note.time, note.duration, note.pitch)
            if seen[key]:
                seen[key] -= 1
            else:
                fresh.append(note)
        out.append(fresh)
    return out


def measure(score: symusic.Score, new: list[list], group: list[int], ref: dict, tolerance: int, bars: int) -> dict:
    """Counts for one group over `bars` bars: new notes, those in their track's range, per track; onsets with
    two or more ordered tracks sounding, those in order, crossed adjacent pairs."""
    notes = [(i, n) for i in group for n in new[i]]
    in_range = sum(1 for i, n in notes if i in ref["ranges"]
                   and ref["ranges"][i][0] - tolerance <= n.pitch <= ref["ranges"][i][1] + tolerance)
    onsets = sorted({int(n.time) for _, n in notes})
    lo, hi = (onsets[0], onsets[-1]) if onsets else (0, -1)
    near = {i: [(int(n.time), int(n.time + n.duration), n.pitch) for n in score.tracks[i].notes
                if n.time <= hi and n.time + n.duration > lo] for i in ref["order"]}
    counted = ordered = crossings = 0
    for t in onsets:
        sounding = []  # each track's pitches at t: of its notes that sound, those attacked last
        for i in ref["order"]:
            if on := [(start, p) for start, end, p in near[i] if start <= t < end]:
                sounding.append([p for start, p in on if start == max(start for start, _ in on)])
        if len(sounding) < 2:
            continue
        crossed = sum(max(lower) > min(upper) for upper, lower in zip(sounding, sounding[1:]))
        counted, ordered, crossings = counted + 1, ordered + (crossed == 0), crossings + crossed
    return {"notes": len(notes), "in_range": in_range, "per_track": [len(new[i]) for i in group],
            "onsets": counted, "ordered": ordered, "crossings": crossings, "bars": bars}


def cut_piece(score: symusic.Score, fraction: float, bars: int):
    """(prompt: the notes that start before the cut, the truth: the piece up to `n` bars after it, the new
    notes per track, cut, ref_start, n) or None when no bar follows the cut."""
    lines = bar_starts(score)
    at = max(1, round(len(lines) * fraction))
    n = min(bars, len(lines) - at)
    if n < 1:
        return None
    cut, end = lines[at], lines[at + n] if at + n < len(lines) else score.end() + 1
    prompt, truth = score.copy(), score.copy()
    for before, after in zip(prompt.tracks, truth.tracks):
        kept = [note for note in before.notes if note.time < cut]
        later = [note for note in after.notes if note.time < end]
        before.notes.clear(), after.notes.clear()
        before.notes.extend(kept), after.notes.extend(later)
    return prompt, truth, new_per_track(truth, prompt), cut, lines[max(0, at - bars)], n


def reassigned(prompt: symusic.Score, truth_new: list[list]) -> symusic.Score:
    """The prompt with the truth's new notes merged into one track per program and given to the tracks by
    the library (midi_io.add_notes), as a continuation's are."""
    merged: dict[tuple, symusic.Track] = {}
    for track, notes in zip(prompt.tracks, truth_new):
        key = (track.program, track.is_drum)
        merged.setdefault(key, symusic.Track(program=key[0], is_drum=key[1])).notes.extend(n.copy() for n in notes)
    score = prompt.copy()
    add_notes(score, [t for t in merged.values() if len(t.notes)])
    return score


def piece_row(score: symusic.Score, made: tuple, results: list, tolerance: int) -> dict:
    """The measures of one piece (cut_piece's `made`) for each group: of each result (output), of the truth
    re-assigned by the library, of the truth."""
    prompt, truth, truth_new, cut, ref_start, n = made
    groups, again = shared_groups(score), reassigned(prompt, truth_new)
    row = {"bars": n, "groups": ", ".join(f"{len(g)}× program {score.tracks[g[0]].program}" for g in groups),
           **{kind: [] for kind in KINDS}}
    for group in groups:
        ref = reference(prompt, group, ref_start, cut)
        row["output"] += [measure(r.score, new_per_track(r.score, prompt), group, ref, tolerance, n)
                          | {"seed": r.seed} for r in results]
        row["reassigned"].append(measure(again, new_per_track(again, prompt), group, ref, tolerance, n))
        row["truth"].append(measure(truth, truth_new, group, ref, tolerance, n))
    return row


def total(rows: list[dict], kind: str) -> dict:
    """Pooled counts of `kind` over rows (each row a piece: its groups, and for the output its variations)."""
    found = [m for r in rows for m in r[kind]]
    shares = [max(m["per_track"]) / m["notes"] for m in found if m["notes"]]
    return {key: sum(m[key] for m in found) for key in ("notes", "in_range", "onsets", "ordered", "crossings", "bars")
            } | {"largest": sum(shares), "measured": len(shares)}


def cells(rows: list[dict]) -> list[str]:
    """The table cells of rows (output · re-assigned truth · truth in each)."""
    t = [total(rows, kind) for kind in KINDS]

    def three(top: str, bottom: str, digits: int = 2) -> str:
        return " · ".join(f"{x[top] / x[bottom]:.{digits}f}" if x[bottom] else "n/a" for x in t)
    return [three("notes", "bars", 1), three("in_range", "notes"), three("ordered", "onsets"),
            three("crossings", "bars"), three("onsets", "bars", 1), three("largest", "measured")]


def table(rows: list[dict]) -> str:
    head = ("| piece | split | shared tracks | bars | new notes per bar | in own range | onsets in order "
            "| crossings per bar | onsets with 2+ voices per bar | largest track share |")
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['piece']} | {r['split']} | {r['groups']} | {r['bars']} | " + " | ".join(cells([r])) + " |")
    for name, chosen in (("**all**", rows), ("**held out (test, validation)**",
                                             [r for r in rows if r["split"] in ("test", "validation")])):
        if chosen:
            lines.append(f"| {name} | | | {sum(r['bars'] for r in chosen)} | " + " | ".join(cells(chosen)) + " |")
    return "\n".join(lines)


def splits(tokens: Path) -> dict[str, str]:
    """Source path -> its split (train, validation, test), from a token folder's piece lists."""
    found = [(json.loads(line)["path"], name) for name in ("test", "validation", "train")
             for path in [tokens / f"{name}.pieces.jsonl"] if path.is_file() for line in path.read_text().splitlines()]
    return dict(found)


def pieces(args) -> list[tuple[str, Path, str | None]]:
    """(name, path, source in the corpus or None) of every piece to run."""
    chosen = [(p.stem, p, SOURCES.get(p.stem)) for p in sorted((ROOT / "data" / "prompts").glob("*.mid"))]
    for given in args.midi:
        chosen += [(p.stem, p, None) for p in (sorted(given.rglob("*.mid")) if given.is_dir() else [given])]
    if args.split:
        taken: Counter = Counter()
        for line in args.split.read_text().splitlines():
            entry = json.loads(line)
            source, collection = entry["path"], entry["path"].split("/")[0]
            if (entry["aug"] or collection == "arrangements" or taken[collection] >= args.per_collection
                    or not (args.corpus / source).is_file()
                    or not shared_groups(load_midi(args.corpus / source))):
                continue
            taken[collection] += 1
            chosen.append((source.rsplit(".", 1)[0], args.corpus / source, source))
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="model folder or name (default: the shipped default)")
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument("--variations", type=int, default=2)
    ap.add_argument("--cut", type=float, default=0.5, help="where to cut, as a share of the piece's bars")
    ap.add_argument("--tolerance", type=int, default=2, help="semitones beyond a track's range still in it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--midi", type=Path, nargs="*", default=[], help="more MIDI files or folders")
    ap.add_argument("--split", type=Path, default=None, help="a *.pieces.jsonl list (e.g. the test split's)")
    ap.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus", help="where --split's paths are")
    ap.add_argument("--per-collection", type=int, default=2)
    ap.add_argument("--tokens", type=Path, default=ROOT / "data" / "tokens", help="for the split column")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from musicmha.generation.music_generator import MusicGenerator

    generator = MusicGenerator.from_pretrained(args.checkpoint, device="cpu")
    where = splits(args.tokens)
    rows = []
    for name, path, source in pieces(args):
        score = load_midi(path)
        groups, made = shared_groups(score), cut_piece(score, args.cut, args.bars)
        if not groups or made is None:
            print(f"{name}: skipped ({'no tracks share a program' if not groups else 'no bar after the cut'})")
            continue
        results = generator.continue_midi(made[0], bars=made[-1], num_samples=args.variations, seed=args.seed)
        rows.append(row := piece_row(score, made, results, args.tolerance) | {
            "piece": name, "source": source, "split": where.get(source, "?") if source else "?"})
        print(f"{name}: {row['groups']}, {row['bars']} bars; output {[m['notes'] for m in row['output']]} new notes, "
              f"truth {[m['notes'] for m in row['truth']]}", flush=True)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"run": run_record(), "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
