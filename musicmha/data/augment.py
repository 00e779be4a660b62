"""Data augmentation for the train split: pitch transposition (drums untouched), velocity offsets and tempo
scaling, applied ahead of time by `prepare` so every variant is a token sequence in the train shard.

Which variants a piece gets depends only on the seed and the piece's path, so shards are reproducible
whatever the number of workers. Validation and test pieces are never augmented: their losses stay
comparable across runs with different augmentation settings.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass

import symusic

from musicmha.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    pitch: int = 0
    velocity: int = 0
    tempo: float = 1.0

    @property
    def name(self) -> str:
        """Empty for the original; e.g. "p+2", "p-1,v+8,t0.9" otherwise (stored in the shard index)."""
        parts = []
        if self.pitch:
            parts.append(f"p{self.pitch:+d}")
        if self.velocity:
            parts.append(f"v{self.velocity:+d}")
        if self.tempo != 1.0:
            parts.append(f"t{self.tempo:g}")
        return ",".join(parts)


@dataclass
class AugmentConfig:
    transpose: tuple[int, ...] = ()  # semitones, e.g. (-3, -2, -1, 1, 2, 3)
    velocity: tuple[int, ...] = ()  # offsets, e.g. (-8, 8)
    tempo: tuple[float, ...] = ()  # factors, e.g. (0.9, 1.1)
    per_piece: int = 0  # random combinations kept per piece; 0 keeps all of them

    def __post_init__(self) -> None:
        self.transpose = tuple(int(x) for x in self.transpose)
        self.velocity = tuple(int(x) for x in self.velocity)
        self.tempo = tuple(float(x) for x in self.tempo)
        if any(not -24 <= p <= 24 or p == 0 for p in self.transpose):
            raise ConfigError(f"transpositions must be non-zero and within ±24 semitones, got {self.transpose}")
        if any(not -64 <= v <= 64 or v == 0 for v in self.velocity):
            raise ConfigError(f"velocity offsets must be non-zero and within ±64, got {self.velocity}")
        if any(not 0.25 <= t <= 4 or t == 1.0 for t in self.tempo):
            raise ConfigError(f"tempo factors must be in [0.25, 4] and not 1, got {self.tempo}")
        if self.per_piece < 0:
            raise ConfigError(f"augment per piece must be >= 0, got {self.per_piece}")

    @property
    def enabled(self) -> bool:
        return bool(self.transpose or self.velocity or self.tempo)

    def variants(self, key: str, seed: int = 0) -> list[Variant]:
        """The augmented variants (original excluded) of the piece `key`, deterministic in (seed, key)."""
        combos = [Variant(p, v, t) for p, v, t in itertools.product(
            (0, *self.transpose), (0, *self.velocity), (1.0, *self.tempo))][1:]  # [0] is the original
        if self.per_piece and self.per_piece < len(combos):
            digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
            combos = random.Random(int.from_bytes(digest[:8], "big")).sample(combos, self.per_piece)
        return combos


def pitch_bounds(score: symusic.Score) -> tuple[int, int] | None:
    """Lowest and highest pitch over the non-drum tracks, or None if they have no notes."""
    lows, highs = [], []
    for track in score.tracks:
        if not track.is_drum and len(track.notes):
            pitches = track.notes.numpy()["pitch"]
            lows.append(int(pitches.min()))
            highs.append(int(pitches.max()))
    return (min(lows), max(highs)) if lows else None


def fits(score: symusic.Score, variant: Variant, pitch_range: tuple[int, int]) -> bool:
    """Whether transposing keeps every pitched note inside `pitch_range` = [low, high) (the tokenizer's):
    a transposition that pushes notes out would silently drop them at tokenization."""
    bounds = pitch_bounds(score)
    if bounds is None or variant.pitch == 0:
        return True
    low, high = bounds
    return pitch_range[0] <= low + variant.pitch and high + variant.pitch < pitch_range[1]


def apply(score: symusic.Score, variant: Variant) -> symusic.Score:
    """A transformed copy of `score`; the input is left unchanged."""
    out = score.copy()
    for track in out.tracks:
        if variant.pitch and not track.is_drum:  # drum "pitches" are instruments, not notes
            track.shift_pitch(variant.pitch, inplace=True)
        if variant.velocity:
            for note in track.notes:
                note.velocity = min(127, max(1, note.velocity + variant.velocity))
    if variant.tempo != 1.0:
        for tempo in out.tempos:
            tempo.qpm = tempo.qpm * variant.tempo
    return out
