"""The pitch-range control (issue 28, item 3): new pitched notes stay between two pitches a musician names.

A range is given as MIDI numbers (48, 84) or note names ("C3", "C6"; middle C is C4 = 60, sharps "#" and
flats "b"), or as one text "C3-C6" / "48-84" (the CLI's --pitch-range, the app's box). It is a decoding
control, like the instruments: the grammar refuses every Pitch token outside it, so each sample keeps it
exactly, with any checkpoint. The drum kit is not pitched and is never limited.

Why decoding and not learned tokens: the density tokens the long run learns move the output only on
average (docs/results.md), while a range a musician asks for ("keep the melody under C6") is a promise; a
mask keeps it for every note, and costs nothing at training time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from musicmha.errors import ConfigError

_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")  # the names messages print
_NAME = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
FORMAT_HINT = "two MIDI pitches 0..127 or note names like C3-C6 (middle C is C4)"


def parse_pitch(value: object) -> int:
    """A MIDI pitch from a number (60, "60") or a note name ("C4", "F#3", "Bb2"); ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"a pitch is a MIDI number 0..127 or a note name like C4, got {value!r}")
    if isinstance(value, int | float) and float(value).is_integer():
        pitch = int(value)
    else:
        text = str(value).strip()
        match = _NAME.match(text)
        if text.lstrip("-").isdigit():
            pitch = int(text)
        elif match:
            letter, accidental, octave = match.groups()
            pitch = 12 * (int(octave) + 1) + _STEPS[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
        else:
            raise ConfigError(f"a pitch is a MIDI number 0..127 or a note name like C4, got {value!r}")
    if not 0 <= pitch <= 127:
        raise ConfigError(f"pitch {value!r} is outside MIDI's 0..127")
    return pitch


def pitch_name(pitch: int) -> str:
    """60 -> 'C4' (sharps), the inverse of parse_pitch for messages."""
    return f"{PITCH_CLASSES[pitch % 12]}{pitch // 12 - 1}"


def parse_pitch_range(value: object) -> tuple[int, int] | None:
    """(low, high) MIDI pitches from "C3-C6", "48-84", ("C3", "C6") or (48, 84); None or "" -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        # "-" separates the two ends; an octave may itself be negative (C-1), so split at a "-" after a digit
        parts = re.split(r"(?<=\d)\s*-\s*|\s*(?:\.\.|–|to)\s*", text)
        if len(parts) != 2:
            raise ConfigError(f"a pitch range is {FORMAT_HINT}, got {value!r}")
        ends: Iterable[object] = parts
    elif isinstance(value, Iterable) and not isinstance(value, bytes):
        ends = list(value)
        if len(ends) != 2:
            raise ConfigError(f"a pitch range is {FORMAT_HINT}, got {value!r}")
    else:
        raise ConfigError(f"a pitch range is {FORMAT_HINT}, got {value!r}")
    low, high = (parse_pitch(end) for end in ends)
    if low > high:
        raise ConfigError(f"pitch range {pitch_name(low)}-{pitch_name(high)} is reversed: give the low pitch first")
    return low, high


def check_pitch_range(pitch_range: tuple[int, int] | None, tokenizer_range: tuple[int, int]) -> None:
    """The range must hold a pitch the tokenizer writes (its range is [low, high), as miditok gives it)."""
    if pitch_range is None:
        return
    low, high = pitch_range
    first, last = tokenizer_range[0], tokenizer_range[1] - 1
    if high < first or low > last:
        raise ConfigError(f"pitch range {pitch_name(low)}-{pitch_name(high)} holds no pitch this model writes: "
                          f"it writes {pitch_name(first)}-{pitch_name(last)} ({first}-{last})")
