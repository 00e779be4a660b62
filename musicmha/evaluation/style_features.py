"""A passage's style as a feature vector, and the nearest style to it (issue 28, benchmarks/style_control.py).

The passage is a whole symusic Score (a generated continuation with its prompt's meter put back by
`with_meter`, or a decoded training piece). Its vector joins these blocks, in this order (FEATURE_BLOCKS):

- `bar_position` (16): where note onsets fall in their bar, in 16ths of that bar's length (the bar lines come
  from the time signatures: musicmha.data.midi_io.bar_starts), so a march's beats, a waltz's three and a
  backbeat look different. Distinct onset ticks are counted once per track (a chord is one onset), drum
  tracks included: the drums are the groove of an arrangement.
- `beat_phase` (8): the same onsets' position inside their quarter note in 8ths of it (the tokenizer's finest
  grid, 32nd notes): straight eighths fall at 4, swung or triplet ones at 5, sixteenths at 2 and 6.
- `drums` (1): the share of all notes that are on drum tracks.
- `pitch_classes` (12): the pitch-class histogram of the pitched notes (music_stats.pitch_class_histogram),
  rotated so its strongest class comes first (ties: the rotation that reads largest): the same for a passage
  and any transposition of it.
- `intervals` (13): per pitched track, the absolute steps between consecutive notes (sorted by onset, then
  pitch: a chord's notes are a step of their own), in semitones 0..12 (larger leaps count as 12), pooled and
  normalized. Also invariant under transposition.
- `density` (1): log2 of the notes per bar, every note (drums too) over the bars from the one holding the
  first onset to the one holding the last; the Density_<level> tokens count notes per bar the same way.
- `polyphony` (1): pitched notes per distinct pitched onset (1 for a melody, about 4 for a chorale).
- `pitch_spread` (1): the standard deviation of the pitched notes' pitches, in octaves.

Histograms sum to 1 (or are all 0 when nothing feeds them, e.g. intervals of a drum-only passage). A style's
centroid is the mean vector of its pieces (`fit_centroids`); the distance to it is Euclidean over the vector
divided by `scale`: the pooled within-style standard deviation of each feature, times the square root of its
block's size, so each block weighs about the same whatever its number of bins (`nearest_style`).

Only numpy and symusic: no model or tokenizer here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import symusic

from musicmha.evaluation import music_stats as ms

log = logging.getLogger(__name__)

BAR_BINS = 16
PHASE_BINS = 8
MAX_INTERVAL = 12
FEATURE_BLOCKS: tuple[tuple[str, int], ...] = (
    ("bar_position", BAR_BINS), ("beat_phase", PHASE_BINS), ("drums", 1), ("pitch_classes", 12),
    ("intervals", MAX_INTERVAL + 1), ("density", 1), ("polyphony", 1), ("pitch_spread", 1),
)
FEATURE_SIZE = sum(size for _, size in FEATURE_BLOCKS)
MIN_NOTES_PER_BAR = 0.25  # the density floor, so log2 stays finite


def block_slices() -> dict[str, slice]:
    """Each block's slice of the feature vector."""
    out, at = {}, 0
    for name, size in FEATURE_BLOCKS:
        out[name] = slice(at, at + size)
        at += size
    return out


def with_meter(notes: symusic.Score, meter: symusic.Score) -> symusic.Score:
    """A copy of `notes` with the time signatures of `meter` (same ticks): a continuation holds only its new
    notes, its bar lines are those of the piece it continues."""
    out = notes.copy()
    out.time_signatures = meter.time_signatures.copy()
    return out


def _track_onsets(score: symusic.Score) -> tuple[list[np.ndarray], int, int]:
    """The distinct onset ticks of each track, the number of notes and of drum notes."""
    onsets, notes, drums = [], 0, 0
    for track in score.tracks:
        if not len(track.notes):
            continue
        times = track.notes.numpy()["time"].astype(np.int64)
        onsets.append(np.unique(times))
        notes += len(times)
        drums += len(times) if track.is_drum else 0
    return onsets, notes, drums


def _bar_lines(score: symusic.Score, last_onset: int) -> np.ndarray:
    """Bar lines from 0 past the last onset (the last line closes the bar holding it)."""
    horizon = last_onset + 16 * score.ticks_per_quarter + 1  # a bar is at most 16 quarters (4/1)
    lines = np.asarray(ms.bar_starts(score, 0, horizon), dtype=np.int64)
    return lines[:np.searchsorted(lines, last_onset, side="right") + 1]


def onset_histograms(score: symusic.Score) -> tuple[np.ndarray, np.ndarray]:
    """(bar_position, beat_phase): the onset histograms of the module docstring, each summing to 1 (zeros: no
    notes)."""
    per_track, _, _ = _track_onsets(score)
    if not per_track:
        return np.zeros(BAR_BINS), np.zeros(PHASE_BINS)
    onsets = np.concatenate(per_track)
    lines = _bar_lines(score, int(onsets.max()))
    bar = np.searchsorted(lines, onsets, side="right") - 1
    start, length = lines[bar], lines[bar + 1] - lines[bar]
    position = np.minimum((onsets - start) * BAR_BINS // length, BAR_BINS - 1)
    tpq = score.ticks_per_quarter
    phase = (onsets % tpq) * PHASE_BINS // tpq
    return (np.bincount(position, minlength=BAR_BINS) / len(onsets),
            np.bincount(phase, minlength=PHASE_BINS) / len(onsets))


def drum_share(score: symusic.Score) -> float:
    """The share of the notes that are on drum tracks (0 for no notes)."""
    _, notes, drums = _track_onsets(score)
    return drums / notes if notes else 0.0


def notes_and_bars(score: symusic.Score) -> tuple[int, int]:
    """Every note (drums too), and the bars from the one holding the first onset to the one holding the last
    ((0, 0) for no notes): the count behind a Density_<level> (musicmha.data.styles.density_level)."""
    per_track, notes, _ = _track_onsets(score)
    if not notes:
        return 0, 0
    onsets = np.concatenate(per_track)
    lines = _bar_lines(score, int(onsets.max()))
    first, last = np.searchsorted(lines, [onsets.min(), onsets.max()], side="right") - 1
    return notes, int(last - first + 1)


def notes_per_bar(score: symusic.Score) -> float:
    """notes_and_bars' ratio (0 for no notes)."""
    notes, bars = notes_and_bars(score)
    return notes / bars if bars else 0.0


def rotated_pitch_classes(score: symusic.Score) -> np.ndarray:
    """The pitch-class histogram rotated to start at its strongest class (the same for every transposition)."""
    histogram = ms.pitch_class_histogram(score)
    if not histogram.sum():
        return histogram
    tops = np.flatnonzero(histogram == histogram.max())
    return max((np.roll(histogram, -int(top)) for top in tops), key=tuple)


def interval_histogram(score: symusic.Score) -> np.ndarray:
    """Absolute steps between consecutive notes of each pitched track, 0..MAX_INTERVAL semitones, normalized."""
    counts = np.zeros(MAX_INTERVAL + 1)
    for track in score.tracks:
        if track.is_drum or len(track.notes) < 2:
            continue
        notes = track.notes.numpy()
        pitches = notes["pitch"][np.lexsort((notes["pitch"], notes["time"]))].astype(np.int64)
        steps = np.minimum(np.abs(np.diff(pitches)), MAX_INTERVAL)
        counts += np.bincount(steps, minlength=MAX_INTERVAL + 1)
    total = counts.sum()
    return counts / total if total else counts


def notes_per_onset(score: symusic.Score) -> float:
    """Pitched notes per distinct pitched onset tick (0 for no pitched notes)."""
    notes = ms.notes_array(score)
    return len(notes) / len(np.unique(notes[:, 0])) if len(notes) else 0.0


def passage_features(score: symusic.Score) -> np.ndarray:
    """The feature vector (FEATURE_SIZE,) of a whole score, blocks in FEATURE_BLOCKS' order. ValueError for a
    score without notes: it has no style to measure."""
    if not score.note_num():
        raise ValueError("the passage has no notes")
    pitches = ms.notes_array(score)[:, 2]
    bar_position, beat_phase = onset_histograms(score)
    spread = float(np.std(pitches)) / 12 if len(pitches) else 0.0
    density = math.log2(max(notes_per_bar(score), MIN_NOTES_PER_BAR))
    vector = np.concatenate([bar_position, beat_phase, [drum_share(score)], rotated_pitch_classes(score),
                             interval_histogram(score), [density], [notes_per_onset(score)], [spread]])
    assert vector.shape == (FEATURE_SIZE,)
    return vector


def fit_centroids(vectors: Mapping[str, Sequence[np.ndarray]],
                  floor: float = 0.1) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each style's centroid (mean vector) and the scale of the distance (module docstring). A feature's
    standard deviation is floored at `floor` times its block's mean one, so a bin that is (nearly) constant in
    the reference pieces does not make every other passage infinitely far."""
    groups = {name: np.asarray(rows, dtype=np.float64).reshape(-1, FEATURE_SIZE) for name, rows in vectors.items()}
    groups = {name: rows for name, rows in groups.items() if len(rows)}
    if not groups:
        raise ValueError("no reference vectors to fit centroids to")
    centroids = {name: rows.mean(axis=0) for name, rows in groups.items()}
    residuals = np.concatenate([rows - centroids[name] for name, rows in groups.items()])
    dof = max(1, len(residuals) - len(groups))
    std = np.sqrt((residuals ** 2).sum(axis=0) / dof)
    scale = np.empty(FEATURE_SIZE)
    for name, part in block_slices().items():
        block = std[part]
        low = max(floor * float(block.mean()), 1e-6)
        scale[part] = np.maximum(block, low) * math.sqrt(block.size)
    log.debug("centroids of %d styles from %d vectors", len(groups), len(residuals))
    return centroids, scale


def style_distances(features: np.ndarray, centroids: Mapping[str, np.ndarray], scale: np.ndarray) -> dict[str, float]:
    """The standardized Euclidean distance from `features` to each style's centroid."""
    return {name: float(np.linalg.norm((np.asarray(features) - centroid) / scale))
            for name, centroid in centroids.items()}


def nearest_style(features: np.ndarray, centroids: Mapping[str, np.ndarray], scale: np.ndarray) -> str:
    """The style whose centroid is nearest to `features` (standardized Euclidean distance; ties: the first)."""
    distances = style_distances(features, centroids, scale)
    return min(distances, key=distances.get)
