"""How tokens are drawn: one `SamplingOptions`, validated once, from the app and the CLI down to the sampler.

The ranges are the sampler's honest domain, decided here and nowhere else: temperature is any finite
number >= 0 (0 is greedy), top-k a whole number >= 1, top-p in (0, 1], the seed a whole number in
[0, 2**63). The app's sliders are narrower, but that is a choice of the page, not a second rule: an API
caller and `musicmha generate` get exactly what this class accepts. `from_inputs` reads the values people
type, where top-k 0 and top-p 1 mean "off", and is what both the app and the CLI call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Integral, Real

from musicmha.errors import ConfigError

SEED_LIMIT = 2**63  # seeds are taken modulo this (row k of a batch uses seed + k), so every seed stays below it


def _number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def whole_number(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingOptions:
    """temperature 0 (or top_k 1) is greedy; top_k/top_p None keep every token; seed None draws from
    torch's global random state (MusicGenerator picks a fresh seed instead, and reports it)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (_number(self.temperature) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"temperature must be a finite number >= 0 (0: greedy), got {self.temperature!r}")
        if self.top_k is not None and not (whole_number(self.top_k) and self.top_k >= 1):
            raise ConfigError(f"top-k must be a whole number >= 1 (or off), got {self.top_k!r}")
        if self.top_p is not None and not (_number(self.top_p) and 0 < self.top_p <= 1):
            raise ConfigError(f"top-p must be in (0, 1] (or off), got {self.top_p!r}")
        if self.seed is not None and not (whole_number(self.seed) and 0 <= self.seed < SEED_LIMIT):
            raise ConfigError(f"seed must be a whole number from 0 to {SEED_LIMIT - 1}, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.top_k == 1 or self.temperature == 0

    def with_seed(self, seed: int) -> SamplingOptions:
        return replace(self, seed=seed)

    @classmethod
    def from_inputs(cls, temperature: float | None = 1.0, top_k: float | None = None, top_p: float | None = None,
                    seed: float | None = None) -> SamplingOptions:
        """What a person types, in the app's fields or the CLI's flags: top-k 0 or empty and top-p 1 or empty
        mean off; whole numbers may arrive as floats (the page sends 7.0), anything else is refused by the
        checks above, with the same message in both places."""
        if _number(temperature):
            temperature = float(temperature)
        top_k = _as_whole(top_k) if top_k else None  # 0 (and None) is off
        if top_p is None or (_number(top_p) and top_p == 1):  # keeping every token is off
            top_p = None
        elif _number(top_p):
            top_p = float(top_p)
        return cls(temperature, top_k, top_p, _as_whole(seed) if seed is not None else None)


def _as_whole(value: object) -> object:
    """7.0 -> 7; anything that is not a whole number is returned as it is, for __post_init__ to refuse."""
    if _number(value) and not whole_number(value) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return value
