"""Songs written from scratch for tests/user_midi.py: pop-band arrangements and game-soundtrack loops (melody,
bass, chords and drums as notes in beats), written with pretty_midi."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pretty_midi

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# Progressions as scale degrees (0-based) of the key's scale; triads built on the scale.
PROGRESSIONS_MAJOR = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 3), (0, 3, 0, 4))
PROGRESSIONS_MINOR = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4))
LEADS = (80, 81, 56, 65, 73, 71, 0, 25, 11, 66)
BASSES = (33, 34, 35, 38, 39)
PADS = (48, 49, 50, 88, 89, 91, 0, 4, 19)
SYNTH_LEADS = tuple(range(80, 88))
KICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE, CLAP, TOM_LOW, TOM_HIGH = 36, 38, 42, 46, 49, 51, 39, 45, 50


def scale_pitch(tonic: int, mode: tuple[int, ...], degree: int) -> int:
    """Pitch of scale degree `degree` (may be negative or > 6) above MIDI pitch `tonic`."""
    octave, step = divmod(degree, len(mode))
    return tonic + 12 * octave + mode[step]


def triad(tonic: int, mode: tuple[int, ...], degree: int) -> list[int]:
    return [scale_pitch(tonic, mode, degree + k) for k in (0, 2, 4)]


def melody_bar(rng: random.Random, tonic: int, mode, chord_degree: int, beats: int, state: dict,
               subdivision: float = 0.5) -> list[tuple[float, float, int]]:
    """(start beat, length in beats, pitch) of one bar of a tune: chord tones on strong beats, steps
    between, some held notes and rests."""
    out, t = [], 0.0
    rhythms = [[1.0], [0.5, 0.5], [1.5, 0.5], [0.5, 1.0, 0.5], [2.0], [0.75, 0.25]]
    while t < beats - 1e-9:
        pattern = rng.choice(rhythms)
        if t + sum(pattern) > beats + 1e-9:
            pattern = [beats - t]
        for length in pattern:
            if rng.random() < 0.08:  # rest
                t += length
                continue
            if abs(t - round(t)) < 1e-9 and rng.random() < 0.6:
                target = chord_degree + rng.choice((0, 2, 4, 7))
                while target - state["degree"] > 4:
                    target -= 7
                while state["degree"] - target > 4:
                    target += 7
                state["degree"] = target
            else:
                state["degree"] += rng.choice((-2, -1, -1, 1, 1, 2))
            state["degree"] = max(min(state["degree"], 12), 0)
            out.append((t, length * rng.choice((0.9, 1.0, 1.0)), scale_pitch(tonic, mode, state["degree"])))
            t += length
    return out


class Beats:
    """Notes in beats (quarter notes) for one instrument, written later by pretty_midi or symusic."""

    def __init__(self, name: str, program: int, is_drum: bool = False) -> None:
        self.name, self.program, self.is_drum = name, program, is_drum
        self.notes: list[tuple[float, float, int, int]] = []  # start, length, pitch, velocity

    def add(self, start: float, length: float, pitch: int, velocity: int) -> None:
        self.notes.append((start, length, int(pitch), max(1, min(127, int(velocity)))))


def drum_bar(part: Beats, rng: random.Random, bar_start: float, beats: int, style: str, crash: bool) -> None:
    if crash:
        part.add(bar_start, 0.5, CRASH, 110)
    steps = {"rock": 2, "disco": 2, "break": 4, "waltz": 2}[style]
    for i in range(beats * steps):
        t = bar_start + i / steps
        beat, off = divmod(i, steps)
        part.add(t, 0.1, CLOSED_HAT if rng.random() > 0.07 else OPEN_HAT, 70 + (15 if off == 0 else 0) + rng.randint(-8, 8))
    for beat in range(beats):
        t = bar_start + beat
        if style == "waltz":
            if beat == 0:
                part.add(t, 0.2, KICK, 105)
            else:
                part.add(t, 0.2, SNARE, 80 + rng.randint(-6, 6))
        elif style == "disco":
            part.add(t, 0.2, KICK, 110)
            if beat % 2:
                part.add(t, 0.2, CLAP, 95)
        else:
            if beat % 2 == 0:
                part.add(t, 0.2, KICK, 108 + rng.randint(-5, 5))
                if style == "break" and rng.random() < 0.5:
                    part.add(t + 0.75, 0.2, KICK, 90)
            else:
                part.add(t, 0.2, SNARE, 100 + rng.randint(-6, 6))
    if style == "rock" and rng.random() < 0.3:
        part.add(bar_start + beats - 0.5, 0.2, KICK, 95)


def fill(part: Beats, bar_start: float, beats: int) -> None:
    for k, pitch in enumerate((TOM_HIGH, TOM_HIGH, TOM_LOW, SNARE)):
        part.add(bar_start + beats - 1 + k * 0.25, 0.1, pitch, 90 + 5 * k)


def write_pretty(parts: list[Beats], qpm: float, meter: tuple[int, int], path: Path, resolution: int) -> None:
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=qpm)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(meter[0], meter[1], 0.0))
    sec = 60.0 / qpm
    for part in parts:
        inst = pretty_midi.Instrument(program=part.program, is_drum=part.is_drum, name=part.name)
        for start, length, pitch, velocity in sorted(part.notes):
            inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start * sec,
                                               end=(start + length) * sec))
        pm.instruments.append(inst)
    pm.write(str(path))


def band_song(rng: random.Random, bars: int = 16, sections: int = 1,
              seconds: float | None = None) -> tuple[list[Beats], float, tuple[int, int]]:
    """A pop arrangement: lead melody, bass, block chords, drums; `sections` progressions (verse, chorus...);
    `seconds` (when given) sets the number of bars."""
    minor = rng.random() < 0.35
    mode = MINOR if minor else MAJOR
    tonic = 60 + rng.randint(-5, 6)
    qpm = float(rng.randint(84, 132))
    meter = (4, 4) if rng.random() < 0.85 else (3, 4)
    beats = meter[0]
    if seconds is not None:
        bars = math.ceil(seconds * qpm / 60 / beats)
    progressions = [rng.choice(PROGRESSIONS_MINOR if minor else PROGRESSIONS_MAJOR) for _ in range(sections)]
    lead = Beats("Lead", rng.choice(LEADS))
    bass = Beats("Bass", rng.choice(BASSES))
    pad_program = rng.choice(PADS)
    pad = Beats("Chords", pad_program)
    drums = Beats("Drums", 0, is_drum=True)
    style = "waltz" if beats == 3 else rng.choice(("rock", "rock", "break", "disco"))
    state = {"degree": 7}
    per_section = max(4, bars // sections // 4 * 4)
    motif: list[list[tuple[float, float, int]]] = []
    for bar in range(bars):
        section = min(bar // per_section, sections - 1)
        degree = progressions[section][bar % 4]
        start = bar * beats
        # Melody: 2-bar motifs repeated with variation, like a tune.
        if bar % 4 < 2 or not motif:
            line = melody_bar(rng, tonic, mode, degree, beats, state)
            motif = (motif + [line])[-2:]
        else:
            line = [(t, n, p + rng.choice((0, 0, 0, 2, -1))) for t, n, p in motif[bar % 2]]
        for t, n, p in line:
            lead.add(start + t, n, p + 12 if p < 60 else p, 80 + rng.randint(-12, 12) + (8 if t == 0 else 0))
        root = scale_pitch(tonic - 24, mode, degree)
        pattern = ((0, 1.5), (1.5, 0.5), (2, 1.5), (3.5, 0.5)) if beats == 4 else ((0, 1), (1, 1), (2, 1))
        for t, n in pattern:
            bass.add(start + t, n * 0.95, root + (7 if t == 2 and rng.random() < 0.3 else 0), 90 + rng.randint(-8, 8))
        chord = [p - 12 if p > 72 else p for p in triad(tonic - 12, mode, degree)]
        if pad_program in (0, 4):  # piano/e-piano comping on the beats
            for b in range(beats):
                for p in chord:
                    pad.add(start + b + (0.5 if b % 2 else 0), 0.45, p, 65 + rng.randint(-6, 6))
        else:
            for p in chord:
                pad.add(start, beats * 0.98, p, 60 + rng.randint(-5, 5))
        if bar % 8 == 7:
            fill(drums, start, beats)
            drum_bar(drums, rng, start, beats - 1, style, crash=False)
        else:
            drum_bar(drums, rng, start, beats, style, crash=bar % 8 == 0)
    return [lead, bass, pad, drums], qpm, meter


def game_loop(rng: random.Random, loops: int) -> tuple[list[Beats], float, tuple[int, int]]:
    """A game-soundtrack loop: 16th (or triplet) arpeggios on a synth lead, synth bass, drums, maybe a pad
    and a second lead with a slow tune; `loops` repetitions of a 4- or 8-bar loop."""
    minor = rng.random() < 0.6
    mode = MINOR if minor else MAJOR
    tonic = 57 + rng.randint(0, 9)
    qpm = float(rng.randint(110, 170))
    meter = (4, 4) if rng.random() < 0.8 else (3, 4)
    beats = meter[0]
    prog = list(rng.choice(PROGRESSIONS_MINOR if minor else PROGRESSIONS_MAJOR))
    loop_bars = rng.choice((4, 8))
    if loop_bars == 8:
        prog = prog + [prog[0], prog[3], prog[1], prog[2]]
    arp = Beats("Arp", rng.choice(SYNTH_LEADS))
    bass = Beats("Synth Bass", rng.choice((38, 39, 87)))
    drums = Beats("Drums", 0, is_drum=True)
    tune = Beats("Lead 2", rng.choice([p for p in SYNTH_LEADS if p != arp.program]))
    pad = Beats("Pad", rng.choice((88, 89, 90, 94, 95))) if rng.random() < 0.5 else None
    triplets = rng.random() < 0.3
    shape = rng.choice(((0, 1, 2, 3), (0, 1, 2, 1), (0, 2, 1, 3), (3, 2, 1, 0)))
    style = "waltz" if beats == 3 else rng.choice(("disco", "break", "rock"))
    state = {"degree": 9}
    tune_loop = [melody_bar(rng, tonic, mode, d, beats, state) for d in prog]
    for repeat in range(loops):
        for i, degree in enumerate(prog):
            start = (repeat * len(prog) + i) * beats
            chord = triad(tonic, mode, degree)
            tones = chord + [chord[0] + 12]
            step = 1 / 3 if triplets else 0.25
            for k in range(round(beats / step)):
                arp.add(start + k * step, step * 0.8, tones[shape[k % 4]] + (12 if (k // 4) % 2 and rng.random() < 0.3 else 0),
                        85 + (10 if k % 4 == 0 else 0) + rng.randint(-5, 5))
            root = scale_pitch(tonic - 24, mode, degree)
            for k in range(beats * 2):
                bass.add(start + k * 0.5, 0.4, root + (12 if k % 2 else 0), 95 + rng.randint(-5, 5))
            if repeat > 0:  # the tune comes in on the second time round
                for t, n, p in tune_loop[i]:
                    tune.add(start + t, n, p + 12, 90 + rng.randint(-6, 6))
            if pad is not None:
                for p in chord:
                    pad.add(start, beats * 0.98, p - 12, 55)
            last = i == len(prog) - 1
            if last and repeat % 2 == 1:
                fill(drums, start, beats)
                drum_bar(drums, rng, start, beats - 1, style, crash=False)
            else:
                drum_bar(drums, rng, start, beats, style, crash=i == 0)
    parts = [arp, bass, tune, drums] + ([pad] if pad is not None else [])
    return parts, qpm, meter

