"""Measures of one part (a bass, drums, comping) set beside the other parts of its piece, for the add-part
benchmark (benchmarks/add_part.py, issue 27 item 4). Every function reads notes in ticks and the bar lines of
the bars measured (`lines`: the start of each bar, then the end of the last); a note belongs to the bar its
onset is in, and notes outside the bars are left out.

- `bar_chords`: the chord of each bar as heard in the other parts: `musicmha.data.chords.detect_chord` over the
  bar's sounding pitch classes, the lowest note of each onset counting as the bass, as the arrangements
  detect a piece's chords (musicmha/data/arrange.py). It is a detected chord, not a chord symbol: the
  arrangements' chord symbols are not stored with the corpus.
- `chord_tone_share`: of the notes in bars with a chord, the share whose pitch class is a tone of the chord;
  `root_share`: of the bars with a chord and a note, the share whose lowest note is the chord's root.
- `onset_f1`: onsets against the true onsets on a 1/16-note grid, bar by bar, micro-averaged (true and false
  positives and misses summed over the bars, then F1); an onset is a grid position, however many notes
  start there.
- `groove_consistency`: mean cosine similarity between the bar-position onset histograms of successive bars.
- `density_ratio`: notes per bar against the truth's.
- `part_stats`: notes per bar, pitch range, onsets on the other parts' onsets (1/8-beat grid), bars played.

Only symusic notes (anything with .time, .duration and .pitch) and musicmha.data.chords: no model here.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from musicmha.data.chords import NAMES, QUALITIES, detect_chord, pitch_weights

SIXTEENTHS = 4  # grid positions per quarter note for onsets and histograms (1/16 notes)
EIGHTHS_OF_A_BEAT = 8  # grid positions per quarter note of the tokenizer (part_stats' onsets)


class Note(Protocol):
    time: int
    duration: int
    pitch: int


def bar_of(time: int, lines: Sequence[int]) -> int | None:
    """Index of the bar holding tick `time`, or None outside lines[0]..lines[-1]."""
    if not lines or time < lines[0] or time >= lines[-1]:
        return None
    return bisect.bisect_right(lines, time) - 1


def by_bar(notes: Sequence[Note], lines: Sequence[int]) -> list[list[Note]]:
    """The notes of each bar (by onset)."""
    bars: list[list[Note]] = [[] for _ in range(max(len(lines) - 1, 0))]
    for n in notes:
        i = bar_of(n.time, lines)
        if i is not None:
            bars[i].append(n)
    return bars


def parse_chord(chord: str) -> tuple[int, set[int]]:
    """(root pitch class, pitch classes) of a chord name such as "F#m" or "Bb7" (NAMES, QUALITIES)."""
    root = max((n for n in NAMES if chord.startswith(n)), key=len)
    pc = NAMES.index(root)
    return pc, {(pc + i) % 12 for i in QUALITIES[chord[len(root):]]}


def bar_chords(others: Sequence[Note], lines: Sequence[int]) -> list[str | None]:
    """The chord of each bar detected from `others` (pitched notes only: leave drums out); None for a bar
    where nothing sounds."""
    chords = []
    for lo, hi in zip(lines[:-1], lines[1:]):
        lowest: dict[int, Note] = {}  # the lowest note sounding at each onset: the bar's bass
        for n in others:
            if n.time < hi and n.time + n.duration > lo and (n.time not in lowest or n.pitch < lowest[n.time].pitch):
                lowest[n.time] = n
        chords.append(detect_chord(pitch_weights(list(others), lo, hi), pitch_weights(list(lowest.values()), lo, hi)))
    return chords


def chord_tone_share(notes: Sequence[Note], chords: Sequence[str | None], lines: Sequence[int]) -> float:
    """Share of the notes (in bars with a chord) whose pitch class is a chord tone; nan when there are none."""
    hits = total = 0
    for chord, bar in zip(chords, by_bar(notes, lines)):
        if chord is None:
            continue
        tones = parse_chord(chord)[1]
        hits += sum(n.pitch % 12 in tones for n in bar)
        total += len(bar)
    return hits / total if total else math.nan


def root_share(notes: Sequence[Note], chords: Sequence[str | None], lines: Sequence[int]) -> float:
    """Share of the bars with a chord and a note whose lowest note is the chord's root; nan when none."""
    hits = total = 0
    for chord, bar in zip(chords, by_bar(notes, lines)):
        if chord is None or not bar:
            continue
        hits += min(n.pitch for n in bar) % 12 == parse_chord(chord)[0]
        total += 1
    return hits / total if total else math.nan


def _grid(time: int, start: int, tpq: int, size: int) -> int:
    """Grid position (1/16 notes from `start`) of a tick, kept inside a bar of `size` positions."""
    return min(max(round((time - start) * SIXTEENTHS / tpq), 0), max(size - 1, 0))


def _bar_size(start: int, end: int, tpq: int) -> int:
    return max(1, round((end - start) * SIXTEENTHS / tpq))


def onset_f1(notes: Sequence[Note], truth: Sequence[Note], lines: Sequence[int], tpq: int) -> float:
    """F1 of the notes' onsets against the truth's on the 1/16 grid, micro-averaged over the bars; nan when
    neither has an onset."""
    tp = fp = fn = 0
    for i, (mine, true) in enumerate(zip(by_bar(notes, lines), by_bar(truth, lines))):
        size = _bar_size(lines[i], lines[i + 1], tpq)
        a = {_grid(n.time, lines[i], tpq, size) for n in mine}
        b = {_grid(n.time, lines[i], tpq, size) for n in true}
        tp, fp, fn = tp + len(a & b), fp + len(a - b), fn + len(b - a)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan


def bar_histograms(notes: Sequence[Note], lines: Sequence[int], tpq: int) -> list[np.ndarray]:
    """Per bar, the notes starting at each 1/16 position of the bar (counts, one bin per position)."""
    hists = []
    for i, bar in enumerate(by_bar(notes, lines)):
        size = _bar_size(lines[i], lines[i + 1], tpq)
        hists.append(np.bincount([_grid(n.time, lines[i], tpq, size) for n in bar], minlength=size).astype(float))
    return hists


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two histograms, the shorter padded with zeros; nan when both are zero, 0 when one is."""
    size = max(len(a), len(b))
    a, b = np.pad(a, (0, size - len(a))), np.pad(b, (0, size - len(b)))
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if not na and not nb:
        return math.nan
    return float(a @ b / (na * nb)) if na and nb else 0.0


def groove_consistency(notes: Sequence[Note], lines: Sequence[int], tpq: int) -> float:
    """Mean cosine similarity of the onset histograms of successive bars (pairs of two empty bars left out; a
    bar that plays beside an empty one scores 0); nan under one pair."""
    hists = bar_histograms(notes, lines, tpq)
    sims = [s for s in (cosine(a, b) for a, b in zip(hists, hists[1:])) if not math.isnan(s)]
    return float(np.mean(sims)) if sims else math.nan


def position_histogram(notes: Sequence[Note], lines: Sequence[int], tpq: int) -> np.ndarray:
    """The bar-position onset histogram summed over the bars (bars of one meter: padded to the longest)."""
    hists = bar_histograms(notes, lines, tpq)
    size = max((len(h) for h in hists), default=0)
    return sum((np.pad(h, (0, size - len(h))) for h in hists), np.zeros(size))


def count_in(notes: Sequence[Note], lines: Sequence[int]) -> int:
    return sum(bar_of(n.time, lines) is not None for n in notes)


def density_ratio(notes: Sequence[Note], truth: Sequence[Note], lines: Sequence[int]) -> float:
    """Notes in the bars against the truth's notes there; nan when the truth has none."""
    true = count_in(truth, lines)
    return count_in(notes, lines) / true if true else math.nan


def part_stats(notes: Sequence[Note], others: Sequence[Note], lines: Sequence[int], tpq: int) -> dict[str, float]:
    """Notes per bar, lowest and highest pitch, the share of its onsets on an onset of the other parts (both on
    the tokenizer's 1/8-beat grid), and the share of bars with a note."""
    def grid(tick: int) -> int:
        return round(tick * EIGHTHS_OF_A_BEAT / tpq)

    bars = by_bar(notes, lines)
    inside = [n for bar in bars for n in bar]
    other_onsets = {grid(n.time) for n in others if bar_of(n.time, lines) is not None}
    onsets = {grid(n.time) for n in inside}
    pitches = [n.pitch for n in inside]
    return {"notes per bar": len(inside) / max(len(bars), 1),
            "lowest pitch": min(pitches) if pitches else math.nan,
            "highest pitch": max(pitches) if pitches else math.nan,
            "onsets on the other parts' onsets": len(onsets & other_onsets) / len(onsets) if onsets else math.nan,
            "bars with a note": sum(bool(bar) for bar in bars) / max(len(bars), 1)}
