"""Arrangements: a corpus piece's melody over drums, bass and comping rendered by Debian's `mma`.

The built-in corpus has no drums and few accompaniment textures, while users bring pop songs. For one
converted piece we take the top line, find one chord per bar (from the piece's own voices when it has
several, else by harmonizing the melody in its estimated key), draw a texture and a groove that fits the
meter (any of the ~690 usable grooves of musicmha/data/groove_table.py), the instruments (General MIDI
families, musicmha/data/instruments.py), a tempo in the groove's range and a key, write an `.mma` file, run
`mma`, put its tracks on the drawn instruments and merge them with the melody, aligned at the first full
bar. Everything comes from `random.Random(f"{seed}:{piece_id}")`, and mma is seeded too (`RndSeed`, fixed
PYTHONHASHSEED), so the same piece and seed give byte-identical MIDI.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, field
from fractions import Fraction

import symusic

from musicmha.errors import MusicmhaError
from musicmha.data.mma import require_mma, run_mma  # noqa: F401 (the corpus and the tests run mma from here)
from musicmha.data.chords import (NAMES, QUALITIES, detect_chord, estimate_key, harmonize_bar,  # noqa: F401
                                  pitch_weights, transpose_chord)
from musicmha.data.grooves import grooves_for, track_kind
from musicmha.data.instruments import (TEXTURES, Instruments, draw_instruments, draw_shift, draw_texture,
                                       shift_key_signature)
from musicmha.data.midi_io import load_midi

log = logging.getLogger(__name__)

# Melody meter -> (groove meter of musicmha/data/groove_table.py, melody bars per mma bar). 2/4 pairs into
# 4/4 grooves (mma's own 2/4 styles, polka and marches, are written in 4) and 3/8 into 6/8; 6/8 also pairs
# into 12/8 grooves (mma's 6/8 ballads are written in 4 dotted-quarter beats); 5/4 takes Jazz54's; 9/8 takes
# 3/4 grooves on dotted-quarter beats; a 3/2, 6/4 or 4/2 bar is two mma bars (per 1/2).
HALF = Fraction(1, 2)
METERS = {(4, 4): (("4/4", 1),), (2, 2): (("4/4", 1),), (2, 4): (("4/4", 2),), (3, 4): (("3/4", 1),),
          (6, 8): (("6/8", 1), ("12/8", 2)), (3, 8): (("6/8", 2),), (12, 8): (("12/8", 1),), (5, 4): (("5/4", 1),),
          (9, 8): (("3/4", 1),), (3, 2): (("3/4", HALF),), (6, 4): (("3/4", HALF),), (4, 2): (("4/4", HALF),)}


@dataclass
class Plan:
    groove: str
    tempo: int  # quarter notes per minute
    program: int  # the lead's
    pickup: int  # ticks before the first full bar
    chords: list[str]  # one per melody bar from the first full bar, in the source's key (mma plays them moved)
    meter: tuple[int, int]
    per: int | Fraction = 1  # melody bars per mma bar (1/2: a melody bar is two mma bars)
    beats: int = 4  # mma beats per mma bar
    instruments: Instruments | None = None  # None: mma's own voices, drums kept (tests)
    family: str = ""  # the groove's family word (a style token for issue 28)
    key_shift: int = 0  # semitones the chords moved
    melody_shift: int = 0  # semitones the melody moved (key_shift plus octaves for the lead's range)
    inserts: list[tuple[int, int]] = field(default_factory=list)  # the melody's short bars (tick, length)


def melody_notes(score: symusic.Score) -> list[symusic.Note]:
    """The top line of the first pitched track: the highest note at each onset (the soprano of a chorale,
    the tune itself for a single line)."""
    track = next((t for t in score.tracks if not t.is_drum and len(t.notes)), None)
    if track is None:
        raise MusicmhaError("no pitched notes")
    top: dict[int, symusic.Note] = {}
    for note in track.notes:
        if note.time not in top or note.pitch > top[note.time].pitch:
            top[note.time] = note
    return [top[t].copy() for t in sorted(top)]


def estimate_pickup(melody: list[symusic.Note], score: symusic.Score, bar: int) -> int:
    """Ticks before the first downbeat, for sources whose manifest does not say (the MIDI starts with the
    pickup and has no bar lines): the phase, on an eighth-note grid, putting most melody duration and most
    onsets of all voices on downbeats. Right for about 70% of a sample of corpus pieces."""
    onsets = [n.time for t in score.tracks if not t.is_drum for n in t.notes]
    total = sum(min(n.duration, bar) for n in melody)
    step = max(score.ticks_per_quarter // 2, 1)

    def fit(o: int) -> float:
        long = sum(min(n.duration, bar) for n in melody if (n.time - o) % bar == 0) / total
        return long + sum((t - o) % bar == 0 for t in onsets) / len(onsets) + (0.05 if o == 0 else 0.0)
    return max(range(0, bar, step), key=lambda o: (round(fit(o), 9), -o))


def piece_meter(score: symusic.Score) -> tuple[tuple[int, int], int | None, list[tuple[int, int]]]:
    """The meter of a piece; when its pickup is written as a short bar of its own (1/8 before 4/4), that
    bar's ticks; and the short bars inside it, (tick, length) of at most a quarter bar, that music21 writes
    for an ABC tune's incomplete bars (a 1/16 upbeat before a section). MusicmhaError when the meter changes."""
    # A signature replaced at the same tick (music21 writes e.g. 1/16 then 3/4 at tick 0) never sounds.
    signatures = sorted({ts.time: (ts.numerator, ts.denominator) for ts in score.time_signatures
                         if ts.time < score.end()}.items())
    if not signatures:
        return (4, 4), None, []

    def ticks(m: tuple[int, int]) -> int:
        return m[0] * score.ticks_per_quarter * 4 // m[1]
    anacrusis = None
    if len(signatures) > 1 and signatures[0][0] == 0 and signatures[1][0] < ticks(signatures[1][1]):
        anacrusis, signatures = signatures[1][0], signatures[1:]
    meter = signatures[0][1]
    ends = [t for t, _ in signatures[1:]] + [score.end()]
    # Up to a quarter of a bar: the accompaniment waits that long (a half bar would be a hole).
    short = [(t, e - t) for (t, m), e in zip(signatures, ends) if m != meter and 4 * (e - t) <= ticks(meter)]
    meters = {m for (t, m), e in zip(signatures, ends) if m == meter or 4 * (e - t) > ticks(meter)}
    if len(meters) > 1:
        raise MusicmhaError(f"meter changes ({', '.join(f'{n}/{d}' for n, d in sorted(meters))})")
    return meter, anacrusis, short


def warp(inserts: list[tuple[int, int]]):
    """Accompaniment tick -> melody tick, for a melody with short bars (tick, length) the accompaniment
    has not: past each, the accompaniment moves on by its length."""
    points, dropped = [], 0
    for tick, length in inserts:
        points.append((tick - dropped, length))
        dropped += length

    def to_melody(tick: int) -> int:
        return tick + sum(length for at, length in points if at <= tick)
    return to_melody


def plan_arrangement(score: symusic.Score, piece_id: str, seed: int, pickup: float | None = None,
                     texture: str | None = None) -> Plan:
    """Chords, texture (`texture`, or drawn), groove, instruments, tempo and key for one piece; raises
    MusicmhaError for unmapped meters."""
    meter, anacrusis, inserts = piece_meter(score)
    if meter not in METERS:
        raise MusicmhaError(f"no groove for {meter[0]}/{meter[1]}")
    tpq = score.ticks_per_quarter
    bar = meter[0] * tpq * 4 // meter[1]
    if pickup is None and anacrusis is not None:
        pickup = anacrusis / tpq
    melody = melody_notes(score)
    voices = [n for t in score.tracks if not t.is_drum for n in t.notes]
    several = sum(1 for t in score.tracks if not t.is_drum and len(t.notes)) > 1
    start = round(pickup * tpq) % bar if pickup is not None else estimate_pickup(melody, score, bar)
    end = max(n.time + n.duration for n in voices)
    tonic, mode = estimate_key(pitch_weights(melody, 0, end))
    chords: list[str] = []
    to_melody = warp(inserts)
    for i in range(max(1, math.ceil((end - sum(n for _, n in inserts) - start) / bar))):
        lo, hi = to_melody(start + i * bar), to_melody(start + (i + 1) * bar)
        if several:
            lowest: dict[int, symusic.Note] = {}  # the bass line: lowest note at each onset
            for n in voices:
                sounding = n.time < hi and n.time + n.duration > lo
                if sounding and (n.time not in lowest or n.pitch < lowest[n.time].pitch):
                    lowest[n.time] = n
            chord = detect_chord(pitch_weights(voices, lo, hi), pitch_weights(list(lowest.values()), lo, hi))
        else:
            chord = harmonize_bar(pitch_weights(melody, lo, hi), tonic, mode)
        chords.append(chord or (chords[-1] if chords else NAMES[tonic] + ("m" if mode == "minor" else "")))
    rng = random.Random(f"{seed}:{piece_id}")
    drawn = draw_texture(rng)  # drawn even when given: the other draws stay the seed's
    if texture is not None and texture not in TEXTURES:
        raise ValueError(f"texture must be one of {', '.join(TEXTURES)}, got {texture!r}")
    texture = texture or drawn
    options = [(g, per) for gmeter, per in METERS[meter]
               for g in grooves_for(gmeter, ("band",) if texture == "band" else ("band", "quiet"))
               if g["beats"] % per == 0]
    if not options:
        raise MusicmhaError(f"no groove for {meter[0]}/{meter[1]} ({texture})")
    # Families with many variations (jazz, latin) would crowd out the rest: weigh 1/sqrt(family size).
    sizes = {g["family"]: 0 for g, _ in options}
    for g, _ in options:
        sizes[g["family"]] += 1
    groove, per = rng.choices(options, weights=[sizes[g["family"]] ** -0.5 for g, _ in options])[0]
    instruments = draw_instruments(rng, texture, groove["family"])
    tempo = rng.randint(*groove["tempo"])
    key_shift, melody_shift = draw_shift(rng, [n.pitch for n in melody], instruments.lead)
    return Plan(groove["name"], tempo, instruments.lead, start, chords,
                meter, per, groove["beats"], instruments, groove["family"], key_shift, melody_shift, inserts)


def mma_source(plan: Plan, rnd_seed: int) -> str:
    """The `.mma` text: groove, tempo, time signature and one line per mma bar (`per` melody bars, each
    chord taking its share of the mma beats)."""
    beats, per = plan.beats, plan.per
    quarters = plan.meter[0] * 4 / plan.meter[1] * per
    lines = [f"// musicmha arrangement: {plan.groove}", f"Groove {plan.groove}",
             f"Tempo {plan.tempo * beats / float(quarters):.3f}", f"TimeSig {plan.meter[0]} {plan.meter[1]}",
             f"RndSeed {rnd_seed}"]
    chords = [transpose_chord(c, plan.key_shift) for c in plan.chords]
    if per < 1:
        bars = [c for c in chords for _ in range(int(1 / per))]
        lines += [f"{number} {c}" + " /" * (beats - 1) for number, c in enumerate(bars, start=1)]
        return "\n".join(lines) + "\n"
    for number, i in enumerate(range(0, len(chords), per), start=1):
        group = (chords[i:i + per] + chords[-1:] * per)[:per]
        lines.append(f"{number} " + " ".join(c + " /" * (beats // per - 1) for c in group))
    return "\n".join(lines) + "\n"


def arrange(source: str | os.PathLike | bytes | symusic.Score, piece_id: str, seed: int = 0,
            pickup: float | None = None, texture: str | None = None) -> tuple[symusic.Score, Plan]:
    """The melody of `source` on its lead instrument over mma's drums, bass and comping, one Score at the
    source's resolution with one tempo; `pickup` (quarter notes) is estimated when None; `texture` ("band",
    "piano", "strings", "brass") pins the texture, e.g. for test files that need drums."""
    score = load_midi(source)
    plan = plan_arrangement(score, piece_id, seed, pickup, texture)
    rng = random.Random(f"{seed}:{piece_id}:mma")
    accompaniment = run_mma(mma_source(plan, rng.randrange(1, 2**31)))
    beats, per = plan.beats, plan.per
    # One mma bar of `beats` quarters spans `per` melody bars: relabel its resolution so that holds, then
    # resample to the melody's ticks and start at the first full bar.
    relabeled = Fraction(accompaniment.ticks_per_quarter * beats * plan.meter[1]) / (plan.meter[0] * 4 * per)
    if relabeled.denominator != 1:
        raise MusicmhaError(f"mma resolution {accompaniment.ticks_per_quarter} does not divide a {plan.groove} bar")
    accompaniment.ticks_per_quarter = int(relabeled)
    accompaniment = accompaniment.resample(score.ticks_per_quarter, min_dur=1).shift_time(plan.pickup)
    if plan.inserts:
        to_melody = warp(plan.inserts)
        for track in accompaniment.tracks:
            notes = [symusic.Note(to_melody(n.time), n.duration, n.pitch, n.velocity) for n in track.notes]
            track.notes.clear()
            track.notes.extend(notes)
    out = symusic.Score(score.ticks_per_quarter)
    out.tempos.append(symusic.Tempo(0, qpm=float(plan.tempo)))
    out.time_signatures.append(symusic.TimeSignature(0, *plan.meter))
    for key in score.key_signatures[:1]:
        out.key_signatures.append(symusic.KeySignature(
            0, shift_key_signature(key.key, key.tonality, plan.key_shift), key.tonality))
    lead = symusic.Track(name="Melody", program=plan.program, is_drum=False)
    for note in melody_notes(score):
        note.pitch = min(127, max(0, note.pitch + plan.melody_shift))
        lead.notes.append(note)
    out.tracks.append(lead)
    out.tracks.extend(voice_tracks(accompaniment, plan.instruments))
    log.debug("%s: %s at %d qpm, program %d, shift %d, %d bars", piece_id, plan.groove, plan.tempo, plan.program,
              plan.melody_shift, len(plan.chords))
    return out, plan


def voice_tracks(accompaniment: symusic.Score, instruments: Instruments | None) -> list[symusic.Track]:
    """mma's tracks with notes, on the drawn instruments: bass tracks (Bass*, Walk*) on the bass program,
    comping tracks on the comping programs in turn (tracks on one mma voice stay on one program), drum
    tracks dropped when the texture has none. None keeps mma's voices."""
    tracks = [t.copy() for t in accompaniment.tracks if len(t.notes)]
    if instruments is None:
        return tracks
    voices: dict[int, int] = {}
    kept = []
    for track in tracks:
        kind = track_kind(track.name, track.is_drum)
        if kind == "drums":
            if not instruments.drums:
                continue
        elif kind == "bass":
            track.program = instruments.bass
        else:
            if track.program not in voices:
                voices[track.program] = instruments.comping[len(voices) % len(instruments.comping)]
            track.program = voices[track.program]
        kept.append(track)
    return kept
