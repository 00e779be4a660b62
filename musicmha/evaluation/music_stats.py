"""Note-level statistics of a (generated or real) passage, for comparing continuations with the truth.

Every function reads a symusic Score in ticks and a tick range [start, end); drum tracks are ignored and
all other tracks are pooled. A note belongs to the range when its onset does.

- `pitch_class_histogram`: 12 bins (C, C#, ..., B), note counts normalized to sum 1 (all zeros: no notes);
- `js_divergence`: Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint supports),
  `l1_distance`: sum of absolute differences (0..2);
- `note_density`: note onsets per quarter note of the range;
- `polyphony`: mean number of notes sounding at once while at least one sounds (total note duration inside
  the range / length of the union of the note intervals inside it);
- `repeated_bar_fraction`: of the non-empty bars starting in the range, the fraction whose content (the
  multiset of (onset - bar start, pitch, duration)) equals that of an earlier bar starting at or after
  `since` (earlier bars may lie before `start`, e.g. in a prompt);
- `bar_starts` (from musicmha.data.midi_io): bar lines from the time signatures;
- `seam`: how smoothly the music crosses a tick (the edges of a regenerated range): the top voice's leap
  in semitones and the onset gap in quarter notes between the last onset before it and the first from it.

Only numpy and symusic: no model or tokenizer here.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import symusic

from musicmha.data.midi_io import bar_starts  # noqa: F401 - part of this module's vocabulary (ms.bar_starts)


def notes_array(score: symusic.Score, start: int = 0, end: int | None = None) -> np.ndarray:
    """(N, 3) int64 array of (onset, duration, pitch) of the non-drum notes with start <= onset < end,
    sorted by onset then pitch."""
    parts = []
    for track in score.tracks:
        if track.is_drum or not len(track.notes):
            continue
        n = track.notes.numpy()
        parts.append(np.stack([n["time"], n["duration"], n["pitch"]], axis=1).astype(np.int64))
    arr = np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)
    keep = arr[:, 0] >= start
    if end is not None:
        keep &= arr[:, 0] < end
    arr = arr[keep]
    return arr[np.lexsort((arr[:, 2], arr[:, 0]))]


def pitch_class_histogram(score: symusic.Score, start: int = 0, end: int | None = None) -> np.ndarray:
    notes = notes_array(score, start, end)
    counts = np.bincount(notes[:, 2] % 12, minlength=12).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def l1_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Sum of |p - q| of two normalized histograms; nan when either is empty."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if not p.sum() or not q.sum():
        return float("nan")
    return float(np.abs(p - q).sum())


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits of two histograms (normalized here); nan when either is empty."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if not p.sum() or not q.sum():
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def note_density(score: symusic.Score, start: int, end: int) -> float:
    """Note onsets per quarter note in [start, end)."""
    if end <= start:
        raise ValueError(f"empty range [{start}, {end})")
    return len(notes_array(score, start, end)) / ((end - start) / score.ticks_per_quarter)


def polyphony(score: symusic.Score, start: int = 0, end: int | None = None) -> float:
    """Mean number of simultaneous notes over the time at least one note sounds (nan: no notes).
    Notes are those with an onset in the range, their sounding clipped to it."""
    notes = notes_array(score, start, end)
    if not len(notes):
        return float("nan")
    on = notes[:, 0]
    off = on + np.maximum(notes[:, 1], 0)
    if end is not None:
        off = np.minimum(off, end)
    total = float((off - on).sum())
    union, reach = 0, None  # sweep the intervals in onset order
    for a, b in sorted(zip(on.tolist(), off.tolist())):
        if reach is None or a >= reach:
            union += b - a
            reach = b
        elif b > reach:
            union += b - reach
            reach = b
    return total / union if union else float("nan")


def repeated_bar_fraction(score: symusic.Score, start: int, end: int, since: int = 0) -> float:
    """Fraction of the non-empty bars starting in [start, end) that repeat an earlier bar exactly
    (earlier bars: starting at or after `since`); nan when there is no non-empty bar in the range."""
    horizon = max(end, score.end()) + 64 * score.ticks_per_quarter  # past the last bar's end
    lines = bar_starts(score, since, horizon)
    notes = notes_array(score, since, None)
    bars = [(a, b) for a, b in itertools.pairwise(lines) if a < end]
    seen: set = set()
    repeated = counted = 0
    for bar_start, bar_end in bars:
        inside = notes[(notes[:, 0] >= bar_start) & (notes[:, 0] < bar_end)]
        if not len(inside):
            continue
        content = frozenset(Counter((int(t) - bar_start, int(d), int(p)) for t, d, p in inside).items())
        if bar_start >= start:
            counted += 1
            repeated += content in seen
        seen.add(content)
    return repeated / counted if counted else float("nan")


@dataclass(frozen=True)
class Seam:
    """How the music crosses one tick (nan: no note on one side of it)."""

    leap: float  # semitones: |top pitch of the last onset before the tick - top pitch of the first onset from it|
    gap: float  # quarter notes from the last onset before the tick to the first onset at or after it


def seam(score: symusic.Score, tick: int) -> Seam:
    """The seam at `tick`: the last onset strictly before it and the first onset at or after it (non-drum notes
    of all tracks pooled), each represented by its highest pitch sounding from that onset (the top voice, which a
    listener follows across a join). A note that started earlier and still sounds does not count: only onsets.
    The search is not bounded, so an empty bar next to the tick shows up as a long gap."""
    notes = notes_array(score)
    before, after = notes[notes[:, 0] < tick], notes[notes[:, 0] >= tick]
    if not len(before) or not len(after):
        return Seam(math.nan, math.nan)
    last, first = before[:, 0].max(), after[:, 0].min()
    top_before = before[before[:, 0] == last, 2].max()
    top_after = after[after[:, 0] == first, 2].max()
    return Seam(float(abs(int(top_after) - int(top_before))), float(first - last) / score.ticks_per_quarter)
