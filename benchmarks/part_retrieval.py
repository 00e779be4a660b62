"""What benchmarks/add_part.py reads from the corpus: which tracks are the part, the held-out arrangements, and
the retrieval baseline (the nearest training part).

A part is the tracks of one GM family (bass, piano, guitar, ...; drums: the kit). In the corpus's
arrangements the tracks are named after mma's roles (Melody, Bass, Walk, Chord, Arpeggio, Drum, ...), so
there `roles` also asks the role: the bass is the Bass and Walk tracks of the bass family (a piano's left hand
playing the bass is not a bass part), comping the other accompaniment tracks of the family asked.

Retrieval: among the first `size` training arrangements (in the split's order) that have the part and the
test piece's meter, the one whose other parts' onset histogram over the measured bars (onsets per 1/16
position of the bar, summed over the bars: musicmha.evaluation.part_measures.position_histogram) is closest
by cosine similarity. Its part's first bars are copied bar for bar into the test piece's bars (ticks scaled),
transposed for a bass so that the pitch class of its first bar's lowest note is the root of the test's first
chord, for comping so that the root of its own first chord (heard in its other parts) is; drums as they are.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

from musicmha.data.instruments import program_family
from musicmha.data.midi_io import load_midi, piece_bar_lines
from musicmha.data.vocabulary import DRUMS
from musicmha.evaluation.part_measures import bar_chords, by_bar, cosine, parse_chord, position_histogram

ROLES = {"Bass": "bass", "Walk": "bass", "Melody": "melody"}  # mma's track names; drums by the flag, else comping


def role(track: symusic.Track) -> str:
    return "drums" if track.is_drum else ROLES.get(track.name.split("-")[0], "comping")


def is_part(track: symusic.Track, part: str, roles: bool = False) -> bool:
    if part == "drums":
        return track.is_drum
    if track.is_drum or program_family(track.program) != part:
        return False
    return not roles or role(track) == ("bass" if part == "bass" else "comping")


def split_part(score: symusic.Score, part: str, roles: bool) -> tuple[symusic.Score, symusic.Score]:
    """(the other parts, the part): copies of the score with its tracks shared out (tempos, meters kept)."""
    others, alone = score.copy(), score.copy()
    others.tracks.clear()
    alone.tracks.clear()
    for track in score.tracks:
        (alone if is_part(track, part, roles) else others).tracks.append(track.copy())
    return others, alone


def part_program(part_score: symusic.Score) -> int:
    """The program of the part's track with the most notes (DRUMS for the kit)."""
    counts = Counter()
    for track in part_score.tracks:
        counts[DRUMS if track.is_drum else track.program] += len(track.notes)
    return counts.most_common(1)[0][0]


def meter(score: symusic.Score) -> str:
    sigs = sorted(score.time_signatures, key=lambda ts: ts.time)
    return f"{sigs[0].numerator}/{sigs[0].denominator}" if sigs else "4/4"


def has_part(entry: dict, part: str) -> bool:
    """Whether a corpus manifest entry of an arrangement lists the part (checked again on its tracks)."""
    if part == "drums":
        return bool(entry.get("drums"))
    if part == "bass":
        return "bass" in entry and program_family(entry["bass"]) == "bass"
    return any(program_family(p) == part for p in entry.get("comping", ()))


def arrangements(pieces_from: Path, manifest: dict[str, dict], part: str) -> list[str]:
    """The corpus paths of the arrangements listed in a split's pieces file whose manifest entry has the part."""
    paths = []
    for line in pieces_from.read_text().splitlines():
        path = json.loads(line)["path"] if line.strip() else ""
        if path.startswith("arrangements/") and path in manifest and has_part(manifest[path], part):
            paths.append(path)
    return paths


def pitched(score: symusic.Score) -> list[symusic.Note]:
    return [n for t in score.tracks if not t.is_drum for n in t.notes]


def first_root(chords: list[str | None]) -> int | None:
    return next((parse_chord(c)[0] for c in chords if c is not None), None)


@dataclass
class Candidate:
    path: str
    hist: np.ndarray  # the other parts' onsets per 1/16 position of the bar, summed over the bars
    bars: list[list[symusic.Note]]  # the part's notes in each bar, times from the bar line
    tpq: int
    anchor: int | None  # the pitch class transposition moves onto the test's first root


class Pool:
    """The training arrangements retrieval picks from, read lazily per meter."""

    def __init__(self, corpus: Path, pieces_from: Path, manifest: dict[str, dict], part: str, bars: int,
                 size: int) -> None:
        self.corpus, self.part, self.bars, self.size = corpus, part, bars, size
        self.paths = arrangements(pieces_from, manifest, part)
        self.manifest = manifest
        self._by_meter: dict[str, list[Candidate]] = {}

    def candidates(self, wanted: str) -> list[Candidate]:
        if wanted not in self._by_meter:
            found = []
            for path in self.paths:
                if len(found) >= self.size:
                    break
                if self.manifest[path].get("meter") == wanted:
                    candidate = self._read(path)
                    if candidate is not None:
                        found.append(candidate)
            self._by_meter[wanted] = found
        return self._by_meter[wanted]

    def _read(self, path: str) -> Candidate | None:
        score = load_midi(self.corpus / path)
        others, alone = split_part(score, self.part, roles=True)
        lines = piece_bar_lines(score)
        if not alone.note_num() or not others.note_num() or len(lines) <= self.bars or meter(score) != \
                self.manifest[path].get("meter"):
            return None
        lines = lines[:self.bars + 1]
        notes = [n for t in alone.tracks for n in t.notes]
        bars = [[symusic.Note(n.time - lines[i], n.duration, n.pitch, n.velocity) for n in bar]
                for i, bar in enumerate(by_bar(notes, lines))]
        if self.part == "drums":
            anchor = None
        elif self.part == "bass":
            anchor = next((min(n.pitch for n in bar) % 12 for bar in bars if bar), None)
        else:
            anchor = first_root(bar_chords(pitched(others), lines))
        hist = position_histogram([n for t in others.tracks for n in t.notes], lines, score.ticks_per_quarter)
        return Candidate(path, hist, bars, score.ticks_per_quarter, anchor)

    def nearest(self, prompt: symusic.Score, lines: list[int]) -> Candidate | None:
        """The candidate of the prompt's meter whose other parts' histogram is closest to the prompt's."""
        hist = position_histogram([n for t in prompt.tracks for n in t.notes], lines, prompt.ticks_per_quarter)
        found = self.candidates(meter(prompt))
        return max(found, key=lambda c: np.nan_to_num(cosine(hist, c.hist), nan=-1.0)) if found else None


def copy_part(candidate: Candidate, lines: list[int], tpq: int, root: int | None) -> list[symusic.Note]:
    """The candidate's part in the bars `lines` delimit (ticks scaled to `tpq`), moved by the least shift
    (-6..5 semitones) that takes its anchor pitch class onto `root` (no shift without both)."""
    shift = 0 if candidate.anchor is None or root is None else (root - candidate.anchor + 6) % 12 - 6
    scale = tpq / candidate.tpq
    notes = []
    for start, bar in zip(lines[:-1], candidate.bars):
        notes += [symusic.Note(start + round(n.time * scale), max(1, round(n.duration * scale)),
                               min(127, max(0, n.pitch + shift)), n.velocity) for n in bar]
    return notes
