"""What a generation may contain: its instruments, its length, and (from nothing) its opening.

Each control is a small validated object; `TokenGrammar` turns them into token masks, so they hold for
every sample and every length rather than being hoped for from the model. Validation that needs the
tokenizer (which tempos and time signatures it can write) reads the grammar spec's token strings, so this
module imports neither miditok nor the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from musicmha.data.vocabulary import DRUMS, GrammarSpec
from musicmha.errors import ConfigError

if TYPE_CHECKING:
    import symusic

logger = logging.getLogger(__name__)

MAX_NEW_TOKENS = 8192  # caps, so that no request runs forever (bars/seconds requests stop at this too)
MAX_BARS = 64
MAX_SECONDS = 300.0
DEFAULT_NEW_TOKENS = 512


@dataclass(frozen=True)
class InstrumentRule:
    """The instruments new notes may use: GM `programs` (None: any) and the drum kit (`drums`)."""

    programs: frozenset[int] | None = None
    drums: bool = True

    def __post_init__(self) -> None:
        if self.programs is not None:
            programs = frozenset(self.programs)
            bad = sorted(p for p in programs if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 127)
            if bad:
                raise ConfigError(f"instrument programs must be General MIDI programs 0..127, got {bad}")
            object.__setattr__(self, "programs", programs)
            if not programs and not self.drums:
                raise ConfigError("no instruments left to play: give at least one program or allow drums")

    @property
    def unrestricted(self) -> bool:
        return self.programs is None and self.drums

    def allows(self, program: int) -> bool:
        """`program` as miditok writes it: 0..127, or DRUMS."""
        return self.drums if program == DRUMS else self.programs is None or program in self.programs

    @classmethod
    def resolve(cls, prompt_programs: Iterable[int] | None, *, instruments: Sequence[int] | None = None,
                drums: bool | None = None, allow_new_instruments: bool = False) -> InstrumentRule:
        """The rule for one request. With a prompt (its programs, DRUMS for a drum track) the default is the
        prompt's instruments; from nothing (None) it is anything. `instruments` replaces the program set,
        `drums` the drum decision; `allow_new_instruments` lifts the program restriction."""
        if allow_new_instruments and instruments is not None:
            raise ConfigError("give either an instrument list or allow_new_instruments, not both")
        if instruments is not None and (isinstance(instruments, str | bytes) or not isinstance(instruments, Iterable)):
            raise ConfigError(f"instruments must be a list of GM programs 0..127, got {instruments!r}")
        if drums is not None and not isinstance(drums, bool):
            raise ConfigError(f"drums must be True, False or None, got {drums!r}")
        if prompt_programs is None or allow_new_instruments:
            programs = None if instruments is None else list(instruments)
            # From nothing with an explicit list, the list is the whole band: drums only when asked for.
            default_drums = instruments is None
        else:
            seen = set(prompt_programs)
            programs = sorted(seen - {DRUMS}) if instruments is None else list(instruments)
            default_drums = DRUMS in seen
        return cls(None if programs is None else frozenset(programs), default_drums if drums is None else drums)

    def describe(self) -> str:
        programs = "any program" if self.programs is None else f"programs {sorted(self.programs)}"
        return f"{programs}, {'with' if self.drums else 'no'} drums"


@dataclass(frozen=True)
class LengthRule:
    """How long a generation runs: `max_new_tokens`, `bars` or `seconds` (one of them). Bars and seconds
    are promises: end-of-piece is masked until they are reached, unless `allow_early_end`."""

    max_new_tokens: int | None = None
    bars: int | None = None
    seconds: float | None = None
    allow_early_end: bool = False

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.max_new_tokens, self.bars, self.seconds)) > 1:
            raise ConfigError("give at most one of max_new_tokens, bars, seconds")
        for name, value, cap in (("max_new_tokens", self.max_new_tokens, MAX_NEW_TOKENS),
                                 ("bars", self.bars, MAX_BARS), ("seconds", self.seconds, MAX_SECONDS)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
            if value > cap:
                raise ConfigError(f"{name} must be at most {cap:g}, got {value:g}")
        if self.bars is not None and self.bars != int(self.bars):
            raise ConfigError(f"bars must be a whole number, got {self.bars}")

    @property
    def token_limit(self) -> int:
        if self.max_new_tokens is not None:
            return int(self.max_new_tokens)
        return MAX_NEW_TOKENS if self.bars or self.seconds else DEFAULT_NEW_TOKENS

    @property
    def timed(self) -> bool:
        return self.bars is not None or self.seconds is not None

    def reached(self, new_bars: int, new_seconds: float) -> bool:
        """Is the requested length complete? A bar is complete when the next one starts, hence `>`."""
        if self.bars is not None:
            return new_bars > self.bars
        if self.seconds is not None:
            return new_seconds >= self.seconds
        return False

    def may_end(self, new_bars: int, new_seconds: float) -> bool:
        return self.allow_early_end or not self.timed or self.reached(new_bars, new_seconds)


@dataclass(frozen=True)
class Opening:
    """Controls for generation from nothing: forced first tokens Bar, TimeSig_n/d, Position_0, Tempo_x
    (miditok's REMI order for a piece's first bar)."""

    tempo: float | None = None  # quarter notes per minute
    time_signature: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.tempo is not None and (isinstance(self.tempo, bool) or not isinstance(self.tempo, int | float)
                                       or not self.tempo > 0 or self.tempo == float("inf")):
            raise ConfigError(f"tempo must be a positive number of beats per minute, got {self.tempo!r}")
        if self.time_signature is not None:
            ts = self.time_signature
            if (isinstance(ts, str | bytes) or len(ts) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in ts)):
                raise ConfigError(f"time signature must be two positive whole numbers like (3, 4), got {ts!r}")
            object.__setattr__(self, "time_signature", (int(ts[0]), int(ts[1])))

    @property
    def empty(self) -> bool:
        return self.tempo is None and self.time_signature is None

    def token_ids(self, spec: GrammarSpec) -> list[int | None]:
        """The forced first tokens (None: the grammar and model choose), checked against the vocabulary."""
        if self.empty:
            return []
        ids = {name: i for i, name in enumerate(spec.tokens)}
        forced: list[int | None] = [spec.bar_id if spec.bar_id is not None else _refuse("bars")]
        signatures = [t.split("_", 1)[1] for t in spec.tokens if t.startswith("TimeSig_")]
        if self.time_signature is not None:
            if not signatures:
                _refuse("time signatures")
            name = "{}/{}".format(*self.time_signature)
            if name not in signatures:
                raise ConfigError(f"time signature {name} cannot be written by this tokenizer; it knows "
                                  f"{', '.join(signatures)}")
            forced.append(ids[f"TimeSig_{name}"])
        elif signatures:
            forced.append(None)  # the model picks the meter
        if self.tempo is not None:
            nearest = nearest_tempo(spec, self.tempo)
            if abs(nearest - self.tempo) > 1e-6:
                logger.info("tempo %g BPM is written as the nearest tempo token, %g BPM", self.tempo, nearest)
            forced += [ids["Position_0"], ids[_tempo_token(spec, nearest)]]
        while forced and forced[-1] is None:
            forced.pop()
        return forced


def tempo_tokens(spec: GrammarSpec) -> dict[float, str]:
    """The tempos (quarter notes per minute) this tokenizer can write, by their token's name. miditok keeps a
    few dozen steps over its range (e.g. 32 from 40 to 250: 94.19, 100.97, ...), so most tempos asked for
    fall between two of them."""
    return {float(t.split("_", 1)[1]): t for t in spec.tokens if t.startswith("Tempo_")}


def nearest_tempo(spec: GrammarSpec, tempo: float) -> float:
    """The tempo token's value that writes `tempo` (the nearest step; a ConfigError outside the range). A
    front end that wants the asked tempo in the file sets it after decoding (see `exact_tempo`)."""
    tempos = tempo_tokens(spec)
    if not tempos:
        _refuse("tempos")
    low, high = min(tempos), max(tempos)
    if not low <= tempo <= high:
        raise ConfigError(f"tempo {tempo:g} BPM is outside what this tokenizer can write ({low:g}..{high:g} BPM)")
    return min(tempos, key=lambda value: abs(value - tempo))


def _tempo_token(spec: GrammarSpec, value: float) -> str:
    return tempo_tokens(spec)[value]


def exact_tempo(score: symusic.Score, written: float, asked: float) -> int:
    """Give `score` (a symusic Score decoded from tokens) the tempo `asked` wherever its tokens wrote the step
    `written` for it (`nearest_tempo`): the notes stay where the model put them in beats, only the file's
    tempo becomes the one asked for (100 BPM instead of the token's 100.97). Returns how many tempo events
    changed."""
    changed = 0
    for event in score.tempos:
        if abs(float(event.qpm) - written) < 1e-3:
            event.qpm = float(asked)
            changed += 1
    return changed


def _refuse(what: str):
    raise ConfigError(f"this tokenizer writes no {what}, so it cannot be given one")


def prompt_programs(spec: GrammarSpec, ids: Sequence[int]) -> set[int]:
    """The programs a tokenized prompt plays (DRUMS for its drum kit), from its Program tokens."""
    found = set()
    for i in set(ids):
        name = spec.tokens[i]
        if name.startswith("Program_"):
            found.add(int(name.split("_", 1)[1]))
    return found


def parse_programs(value: str | Iterable[object] | None) -> list[int]:
    """GM programs as people give them: '0,33' (the CLI's --instruments), a list of numbers (7.0 from a page
    is 7) or of the app's labels ('33: Electric Bass (finger)'). Range checks are InstrumentRule's."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int | float) else value
    programs = []
    for part in parts:
        text = str(part).split(":", 1)[0].strip()  # a label keeps its number before the colon
        if not text and isinstance(value, str):
            continue  # '0,,33' and a trailing comma are harmless in a typed list
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if not number.is_integer():
            raise ConfigError(f"instruments take General MIDI program numbers like 0,33, got {part!r}")
        programs.append(int(number))
    return programs


def parse_time_signature(text: str | None) -> tuple[int, int] | None:
    """'3/4' -> (3, 4) (the CLI's --time-signature, the app's meter box); empty or None -> None."""
    text = (text or "").strip()
    if not text:
        return None
    parts = text.split("/")
    try:
        numerator, denominator = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"a time signature looks like 3/4, got {text!r}") from None
    return numerator, denominator
