"""Instruments of an arrangement, drawn per piece from General MIDI families, and the key it is played in.

A texture is drawn first (TEXTURES, with its probability), then the programs:
- band (70%): drums kept; lead from one of nine melodic families, bass from the bass family (or a tuba or
  contrabass), each comping track from piano, organ, guitar, string ensemble or pad programs;
- piano (12%): one piano plays the tune and mma's bass and comping (its left hand), no drums;
- strings (10%): a string quartet (violin lead, violin/viola comping, cello bass) or string ensemble
  (violin lead, ensemble comping, contrabass or cello), no drums;
- brass (8%): trumpet or horn lead, brass section/trombone/horn comping, tuba or trombone bass; drums only
  under a march.
The key: a shift of -6..+5 semitones (each of the twelve keys equally likely), plus the octave that keeps
the melody inside the lead instrument's range (RANGES); chords move by the shift, the melody by both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Melodic families a lead comes from: name -> (probability, programs).
LEAD_FAMILIES = {
    "piano": (0.20, (0, 1, 2, 3, 4, 5, 6, 7)), "chromatic percussion": (0.07, (8, 9, 10, 11, 12, 13)),
    "organ": (0.08, (16, 17, 18, 19, 20, 21, 22, 23)), "guitar": (0.12, (24, 25, 26, 27, 28, 29, 30)),
    "strings": (0.12, (40, 41, 42, 46)), "brass": (0.10, (56, 57, 59, 60)),
    "reed": (0.13, (64, 65, 66, 67, 68, 69, 70, 71)), "pipe": (0.10, (72, 73, 74, 75, 77, 78, 79)),
    "synth lead": (0.08, (80, 81, 82, 83, 84, 85, 86, 87)),
}
BASS_PROGRAMS = (32, 32, 33, 33, 34, 35, 36, 37, 38, 39, 43, 58)  # acoustic and finger bass twice as likely
COMPING_PROGRAMS = (0, 1, 2, 4, 5, 16, 17, 18, 19, 24, 25, 26, 27, 48, 49, 50, 88, 89, 90, 91, 92, 94, 95)
TEXTURES = {"band": 0.70, "piano": 0.12, "strings": 0.10, "brass": 0.08}
# Lowest and highest comfortable pitch per lead program (written pitch; GM sounds as written).
_FAMILY_RANGE = {0: (36, 96), 8: (53, 96), 16: (36, 96), 24: (40, 86), 40: (55, 100), 56: (52, 82),
                 64: (49, 88), 72: (60, 96), 80: (40, 96)}
RANGES = {41: (48, 88), 42: (36, 76), 46: (24, 103), 57: (40, 72), 60: (41, 77), 64: (56, 88), 66: (44, 76),
          67: (36, 69), 68: (58, 91), 69: (52, 81), 70: (34, 72), 71: (50, 91), 72: (74, 108)}
SHIFTS = range(-6, 6)
OCTAVES = (0, -1, 1, -2, 2)  # tried in this order: the least move that fits


@dataclass
class Instruments:
    texture: str
    lead: int
    bass: int
    comping: list[int] = field(default_factory=list)  # cycled over the comping tracks, in track order
    drums: bool = True


def draw_texture(rng: random.Random) -> str:
    return rng.choices(list(TEXTURES), weights=list(TEXTURES.values()))[0]


def draw_instruments(rng: random.Random, texture: str, groove_family: str) -> Instruments:
    """The programs of one piece in `texture`."""
    if texture == "band":
        family = rng.choices(list(LEAD_FAMILIES), weights=[p for p, _ in LEAD_FAMILIES.values()])[0]
        return Instruments("band", rng.choice(LEAD_FAMILIES[family][1]), rng.choice(BASS_PROGRAMS),
                           [rng.choice(COMPING_PROGRAMS) for _ in range(3)])
    if texture == "piano":
        piano = rng.choice((0, 0, 1, 2, 4))
        return Instruments("piano", piano, piano, [piano], drums=False)
    if texture == "strings":
        if rng.random() < 0.5:  # quartet
            return Instruments("strings", 40, 42, [41, 40], drums=False)
        return Instruments("strings", 40, rng.choice((42, 43)), [rng.choice((48, 49))], drums=False)
    if texture != "brass":
        raise ValueError(f"unknown texture {texture!r}")
    return Instruments("brass", rng.choice((56, 56, 60)), rng.choice((58, 57)), [rng.choice((61, 57, 60)), 61],
                       drums=groove_family == "march")


def lead_range(program: int) -> tuple[int, int]:
    return RANGES.get(program) or _FAMILY_RANGE[program // 8 * 8]


def draw_shift(rng: random.Random, pitches: list[int], program: int) -> tuple[int, int]:
    """(key shift in -6..5, total melody shift = key shift + octaves) keeping `pitches` in the lead's range,
    or as many of them as any octave can."""
    key = rng.choice(SHIFTS)
    low, high = lead_range(program)

    def outside(total: int) -> int:
        return sum(not low <= p + total <= high for p in pitches)
    total = min((key + 12 * o for o in OCTAVES), key=lambda t: (outside(t), OCTAVES.index((t - key) // 12)))
    return key, total


def program_family(program: int) -> str:
    """The General MIDI family name of a program (the coverage report's rows)."""
    return ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
            "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")[program // 8]


def shift_key_signature(key: int, tonality: int, semitones: int) -> int:
    """Sharps (negative: flats) of a key signature moved by `semitones`, spelled with at most six flats or
    six sharps (tonality 0 major, 1 minor)."""
    tonic = (key * 7 + (9 if tonality else 0)) % 12
    major_tonic = (tonic + semitones - (9 if tonality else 0)) % 12
    sharps = major_tonic * 7 % 12
    return sharps - 12 if sharps > 6 else sharps
