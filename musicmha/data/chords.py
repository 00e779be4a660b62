"""Chords for an arrangement: one per bar, detected from a piece's voices or harmonizing its melody in its
estimated key (Krumhansl-Kessler profiles), and moved to another key. musicmha/data/arrange.py uses them."""

from __future__ import annotations

import math

import symusic

NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
QUALITIES = {"": (0, 4, 7), "m": (0, 3, 7), "7": (0, 4, 7, 10), "dim": (0, 3, 6)}
# A quality's handicap, so a passing seventh or a bare third does not outvote a plain triad.
QUALITY_COST = {"": 0.0, "m": 0.0, "7": 0.1, "dim": 0.05}
# Diatonic triads (degree, quality) in order of preference on ties: I, IV, V first.
DIATONIC = {"major": ((0, ""), (5, ""), (7, ""), (9, "m"), (2, "m"), (4, "m"), (11, "dim")),
            "minor": ((0, "m"), (5, "m"), (7, ""), (8, ""), (3, ""), (10, ""), (2, "dim"))}
# Krumhansl-Kessler key profiles (C major / C minor), rotated for the other tonics.
PROFILES = {"major": (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
            "minor": (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)}


def pitch_weights(notes: list[symusic.Note], start: int, end: int) -> list[float]:
    """Duration (ticks) each pitch class sounds within [start, end)."""
    weights = [0.0] * 12
    for n in notes:
        overlap = min(n.time + n.duration, end) - max(n.time, start)
        if overlap > 0:
            weights[n.pitch % 12] += overlap
    return weights


def estimate_key(weights: list[float]) -> tuple[int, str]:
    """(tonic pitch class, "major"/"minor") whose rotated profile correlates best with `weights`."""
    def corr(a: list[float], b: list[float]) -> float:
        ma, mb = sum(a) / 12, sum(b) / 12
        num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
        den = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
        return num / den if den else 0.0
    keys = [(tonic, mode) for mode in ("major", "minor") for tonic in range(12)]
    return max(keys, key=lambda k: corr(weights, [PROFILES[k[1]][(pc - k[0]) % 12] for pc in range(12)]))


def harmonize_bar(weights: list[float], tonic: int, mode: str) -> str | None:
    """The diatonic triad covering most of the bar's melody duration; earlier DIATONIC entries win ties."""
    if not any(weights):
        return None
    total = sum(weights)
    best = max(enumerate(DIATONIC[mode]), key=lambda item: (
        round(sum(weights[(tonic + item[1][0] + i) % 12] for i in QUALITIES[item[1][1]]) / total, 9), -item[0]))
    degree, quality = best[1]
    return NAMES[(tonic + degree) % 12] + quality


def detect_chord(weights: list[float], bass: list[float] | None = None) -> str | None:
    """Major, minor, dominant-seventh or diminished chord best matching a bar's sounding pitch classes:
    chord tones count, other tones count against it by half, a root in the bass helps."""
    total = sum(weights)
    if not total:
        return None
    w = [x / total for x in weights]
    b = [x / (sum(bass) or 1) for x in bass] if bass else [0.0] * 12
    best, best_score = None, -math.inf
    for quality, intervals in QUALITIES.items():
        for root in range(12):
            tones = {(root + i) % 12 for i in intervals}
            score = sum(w[pc] if pc in tones else -0.5 * w[pc] for pc in range(12))
            score += 0.25 * b[root] - QUALITY_COST[quality]
            if score > best_score + 1e-9:
                best, best_score = NAMES[root] + quality, score
    return best


def transpose_chord(chord: str, semitones: int) -> str:
    """`chord` ("F#m", "Bb7") with its root moved by `semitones`, spelled from NAMES."""
    root = max((n for n in NAMES if chord.startswith(n)), key=len)
    return NAMES[(NAMES.index(root) + semitones) % 12] + chord[len(root):]
