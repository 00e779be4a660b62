"""MIDI files that look like what users bring, made reproducibly from pieces the model was not trained on.

    python benchmarks/make_user_midi.py --out /tmp/user-midi [--corpus /tmp/um/corpus] [--per-kind 6] [--seed 0]

`--corpus` is a folder built by `musicmha corpus` (its manifest gives each piece's split); only `test`
split pieces are used. When the folder has no manifest yet, it is built first with

    musicmha corpus --out CORPUS --collections bach,ryansMammoth --limit 200 --workers 1

(the first 200 files of each collection: 8 Bach chorales and 11 fiddle tunes land in the test split).
Six kinds, `--per-kind` files each, listed with their kind, source and shape in `OUT/manifest.json`:

- arranged: a test piece's melody over mma's drums, bass and comping (musicmha.data.arrange), as the corpus's
  arrangements collection makes them;
- band: hand-rolled pop arrangements written with pretty_midi: a melody on a GM lead, a bass line, block
  chords on pads/strings/piano and a drum kit (kick, snare, hats, crashes on channel 10);
- piano: test pieces played on piano in two hands with sustain pedal (CC64), onsets jittered by 10-30 ms,
  varied velocities, rubato through a tempo change every bar, 480 or 960 ticks per quarter;
- long: 4-8 minute files (a band song of many sections, an arrangement repeated, a suite of test pieces on
  piano);
- foreign: test pieces written with mido as other programs write them: running status, note-on velocity 0
  as note-off, odd resolutions (96, 384, 120, 192), format 0 and format 1, program changes in the middle of
  a track, zero-length drum notes, tempo maps with a change every beat, GM reset sysex, markers;
- game: game-soundtrack loops: 16th-note arpeggios on synth leads (GM 80-87), synth bass and drums,
  a loop repeated 4-8 times.

The same corpus and seed give the same files (byte for byte).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mido
import pretty_midi
import symusic

from musicmha.data.midi_io import load_midi

KINDS = ("arranged", "band", "piano", "long", "foreign", "game")
CORPUS_COMMAND = ["musicmha", "corpus", "--collections", "bach,ryansMammoth", "--limit", "200", "--workers", "1"]

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


@dataclass
class Made:
    name: str
    kind: str
    source: str
    description: str
    write: Callable[[Path], None]


# ---------------------------------------------------------------- small music helpers

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


# ---------------------------------------------------------------- hand-rolled kinds

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


# ---------------------------------------------------------------- from test-split pieces

def voices(score: symusic.Score) -> list[list[tuple[float, float, int, int]]]:
    """Each pitched track of a piece as (start, length in quarter notes, pitch, velocity), in order."""
    tpq = score.ticks_per_quarter
    out = []
    for track in score.tracks:
        if track.is_drum or not len(track.notes):
            continue
        out.append(sorted((n.time / tpq, n.duration / tpq, n.pitch, n.velocity) for n in track.notes))
    return out


def meter_of(score: symusic.Score) -> tuple[int, int]:
    sigs = [ts for ts in score.time_signatures if ts.time < max(score.end(), 1)]
    return (sigs[-1].numerator, sigs[-1].denominator) if sigs else (4, 4)


def bar_quarters(meter: tuple[int, int]) -> float:
    return meter[0] * 4 / meter[1]


def with_left_hand(score: symusic.Score, rng: random.Random) -> list[list[tuple[float, float, int, int]]]:
    """A single-line tune gets a left hand: broken chords from its harmonization (musicmha.data.arrange)."""
    from musicmha.data.arrange import NAMES, QUALITIES, plan_arrangement

    parts = voices(score)
    if len(parts) > 1:
        return parts
    meter = meter_of(score)
    try:
        plan = plan_arrangement(score, "piano", 0)
    except Exception:  # an unmapped meter: no left hand, the tune alone
        return parts
    bar = bar_quarters(meter)
    pickup = plan.pickup / score.ticks_per_quarter
    left = []
    for i, name in enumerate(plan.chords):
        root_name = name.rstrip("m7dim") or name[:1]
        quality = name[len(root_name):]
        root = 48 + NAMES.index(root_name)
        tones = [root + k for k in QUALITIES.get(quality, (0, 4, 7))][:3]
        pattern = (0, 2, 1, 2)  # Alberti
        step = 0.5 if meter[1] == 4 else 0.5
        for k in range(int(bar / step)):
            t = pickup + i * bar + k * step
            left.append((t, step, tones[pattern[k % 4]] - 12 if k == 0 else tones[pattern[k % 4]], 60))
    return [parts[0], left]


def expressive_piano(parts: list[list[tuple[float, float, int, int]]], meter: tuple[int, int], rng: random.Random,
                     tpq: int, qpm: float) -> symusic.Score:
    """Voices on piano in two hands, played: rubato (a tempo change each bar, slowing at phrase ends),
    onsets jittered by 10-30 ms, velocities shaped by phrase and voice, sustain pedal changed each bar."""
    bar = bar_quarters(meter)
    end = max(s + d for part in parts for s, d, _, _ in part)
    n_bars = math.ceil(end / bar) + 1
    tempos = []
    for b in range(n_bars):
        phrase = (b % 4) / 4
        factor = 1 + 0.06 * math.sin(2 * math.pi * phrase) - (0.12 if b % 4 == 3 else 0) + rng.uniform(-0.03, 0.03)
        tempos.append(qpm * factor)

    def qpm_at(q: float) -> float:
        return tempos[min(int(q // bar), n_bars - 1)]

    def ticks(q: float) -> int:
        return round(q * tpq)

    score = symusic.Score(tpq)
    score.time_signatures.append(symusic.TimeSignature(0, *meter))
    for b, value in enumerate(tempos):
        score.tempos.append(symusic.Tempo(ticks(b * bar), qpm=round(value, 2)))
    right = symusic.Track(name="Piano RH", program=0)
    left = symusic.Track(name="Piano LH", program=0)
    split = 60
    for v, part in enumerate(parts):
        top = v == 0
        for start, length, pitch, _ in part:
            if len(parts) == 1:
                hand = right if pitch >= split else left
            else:  # upper voices in the right hand, lower ones in the left
                hand = right if v < max(1, len(parts) // 2) else left
            jitter_ms = rng.uniform(10, 30) * rng.choice((-1, 1))
            shift = jitter_ms / 1000 * qpm_at(start) / 60  # quarter notes
            onset = max(0.0, start + shift)
            dur = max(0.05, length * rng.uniform(0.8, 1.02))
            phrase = math.sin(math.pi * ((start / bar) % 4) / 4)
            velocity = int(52 + 24 * phrase + (10 if top else 0) + rng.randint(-9, 9))
            hand.notes.append(symusic.Note(ticks(onset), max(1, ticks(dur)), pitch, max(20, min(120, velocity))))
    for b in range(n_bars - 1):
        down = ticks(b * bar + 0.06 * qpm_at(b * bar) / 60)
        up = ticks((b + 1) * bar - 0.04 * qpm_at(b * bar) / 60)
        right.controls.append(symusic.ControlChange(down, 64, 127))
        right.controls.append(symusic.ControlChange(up, 64, 0))
    for track in (right, left):
        track.notes.sort(key=lambda n: (n.time, n.pitch))
        if len(track.notes):
            score.tracks.append(track)
    return score


def foreign_file(parts: list[list[tuple[float, float, int, int]]], meter: tuple[int, int], rng: random.Random,
                 path: Path, tpq: int, fmt: int, drums: bool) -> None:
    """Write voices with mido the way other programs do (see the module docstring)."""
    programs = rng.choice(((40, 40, 41, 42), (56, 57, 60, 58), (19, 19, 19, 19), (73, 71, 70, 68), (24, 25, 32, 33)))
    qpm = rng.uniform(70, 130)
    events: list[list[tuple[int, int, mido.Message]]] = []  # per track: (tick, order, message)
    end_q = max(s + d for part in parts for s, d, _, _ in part)

    def tick(q: float) -> int:
        return round(q * tpq)

    meta = [(0, 0, mido.MetaMessage("track_name", name="Untitled")),
            (0, 0, mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1])),
            (0, 0, mido.MetaMessage("key_signature", key="C")),
            (0, 1, mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01]))]  # GM System On
    beat = 0
    while beat < end_q + 1:  # a tempo change every beat: a drifting, slightly accelerating performance
        value = qpm * (1 + 0.002 * beat) * (1 + 0.05 * math.sin(beat / 3))
        meta.append((tick(beat), 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(value))))
        if beat % 16 == 0:
            meta.append((tick(beat), 0, mido.MetaMessage("marker", text=f"Section {beat // 16 + 1}")))
        beat += 1
    events.append(meta)
    for v, part in enumerate(parts[:4]):
        channel = v if v < 9 else v + 1
        program = programs[v % 4]
        track = [(0, 0, mido.MetaMessage("track_name", name=f"Voice {v + 1}")),
                 (0, 1, mido.Message("control_change", channel=channel, control=7, value=100)),
                 (0, 1, mido.Message("program_change", channel=channel, program=program))]
        half = tick(end_q / 2)
        if v == 0:  # the top voice changes instrument halfway, in the same track and channel
            track.append((half, 0, mido.Message("program_change", channel=channel, program=(program + 8) % 128)))
        for start, length, pitch, velocity in part:
            on, off = tick(start), tick(start + length)
            vel = max(1, min(127, velocity + rng.randint(-10, 10)))
            track.append((on, 2, mido.Message("note_on", channel=channel, note=pitch, velocity=vel)))
            # note-on velocity 0 as note-off (lets running status run on), as many sequencers write it
            track.append((max(on + 1, off), 1, mido.Message("note_on", channel=channel, note=pitch, velocity=0)))
        events.append(track)
    if drums:  # zero-length hits: note-on and note-off at the same tick
        track = [(0, 0, mido.MetaMessage("track_name", name="Drums"))]
        step = 0.5
        for k in range(int(end_q / step)):
            q = k * step
            notes = [CLOSED_HAT] + ([KICK] if k % 4 == 0 else []) + ([SNARE] if k % 4 == 2 else [])
            for note in notes:
                track.append((tick(q), 2, mido.Message("note_on", channel=9, note=note, velocity=90)))
                track.append((tick(q), 3, mido.Message("note_off", channel=9, note=note, velocity=0)))
        events.append(track)
    if fmt == 0:
        events = [[e for track in events for e in track]]
    mid = mido.MidiFile(type=fmt, ticks_per_beat=tpq)
    for track_events in events:
        track = mido.MidiTrack()
        now = 0
        for t, _, msg in sorted(track_events, key=lambda e: (e[0], e[1])):
            track.append(msg.copy(time=t - now))
            now = t
        mid.tracks.append(track)
    mid.save(str(path))


def concatenate(parts_list: list[list[list[tuple[float, float, int, int]]]], meter: tuple[int, int]):
    """Pieces one after another (each starts on a bar line after a bar of rest), voice by voice."""
    bar = bar_quarters(meter)
    n = max(len(p) for p in parts_list)
    out = [[] for _ in range(n)]
    offset = 0.0
    for parts in parts_list:
        end = max(s + d for part in parts for s, d, _, _ in part)
        for v, part in enumerate(parts):
            out[v].extend((s + offset, d, p, vel) for s, d, p, vel in part)
        offset += (math.ceil(end / bar) + 1) * bar
    return [part for part in out if part]


def repeat_score(score: symusic.Score, times: int) -> symusic.Score:
    """A score played `times` times in a row (each copy starts on the bar line after the last note)."""
    tpq = score.ticks_per_quarter
    bar = round(bar_quarters(meter_of(score)) * tpq)
    length = math.ceil(score.end() / bar) * bar
    out = score.copy()
    for k in range(1, times):
        shifted = score.shift_time(k * length)
        for target, track in zip(out.tracks, shifted.tracks):
            target.notes.extend(track.notes)
            target.controls.extend(track.controls)
    for track in out.tracks:
        track.notes.sort()
    return out


# ---------------------------------------------------------------- the set

def test_pieces(corpus: Path) -> list[tuple[str, Path]]:
    """(id, MIDI path) of the corpus's test-split pieces, sorted by id within each collection, taken from
    the collections in turn."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    pieces = [p for p in manifest["pieces"] if p.get("split") == "test" and p.get("path")
              and p.get("collection") != "arrangements"]
    by_collection: dict[str, list[dict]] = {}
    for p in sorted(pieces, key=lambda p: p["id"]):
        by_collection.setdefault(p["collection"], []).append(p)
    # Round robin over collections, so every kind gets chorales and fiddle tunes alike.
    order = [p for group in zip(*_padded(list(by_collection.values()))) for p in group if p is not None]
    return [(p["id"], corpus / p["path"]) for p in order]


def _padded(groups: list[list]) -> list[list]:
    longest = max((len(g) for g in groups), default=0)
    return [g + [None] * (longest - len(g)) for g in groups]


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.split("/")[-1].rsplit(".", 1)[0]).strip("-")[:40]


def plan_files(sources: list[tuple[str, symusic.Score]], per_kind: int, seed: int,
               kinds: tuple[str, ...] = KINDS) -> list[Made]:
    """Every file to write, as closures (so a test can build a few without the corpus)."""
    made: list[Made] = []

    def rng(kind: str, i: int) -> random.Random:
        return random.Random(f"{seed}:{kind}:{i}")

    def pick(i: int, kind: str) -> tuple[str, symusic.Score]:
        return sources[(i + 3 * KINDS.index(kind)) % len(sources)]

    if "arranged" in kinds and sources:
        from musicmha.data.arrange import arrange
        from musicmha.errors import MusicmhaError

        count = 0
        for piece_id, score in sources:
            if count >= per_kind:
                break
            try:
                arranged, plan = arrange(score, piece_id, seed)
            except MusicmhaError:
                continue
            count += 1
            made.append(Made(f"arranged-{count:02d}-{slug(piece_id)}.mid", "arranged", piece_id,
                             f"{plan.groove} at {plan.tempo} qpm, lead program {plan.program}",
                             lambda path, s=arranged: s.dump_midi(str(path))))
    if "band" in kinds:
        for i in range(per_kind):
            r = rng("band", i)
            parts, qpm, meter = band_song(r, bars=r.choice((16, 24, 32)), sections=2)
            resolution = (220, 480, 384)[i % 3]
            made.append(Made(f"band-{i + 1:02d}.mid", "band", "pretty_midi",
                             f"{meter[0]}/{meter[1]} at {qpm:g} qpm, programs {[p.program for p in parts]}, "
                             f"tpq {resolution}",
                             lambda path, a=(parts, qpm, meter, resolution): write_pretty(a[0], a[1], a[2], path, a[3])))
    if "piano" in kinds and sources:
        for i in range(per_kind):
            r = rng("piano", i)
            piece_id, score = pick(i, "piano")
            tpq = (480, 960)[i % 2]
            qpm = r.uniform(60, 100)
            piano = expressive_piano(with_left_hand(score, r), meter_of(score), r, tpq, qpm)
            made.append(Made(f"piano-{i + 1:02d}-{slug(piece_id)}.mid", "piano", piece_id,
                             f"two hands, pedal, rubato around {qpm:.0f} qpm, tpq {tpq}",
                             lambda path, s=piano: s.dump_midi(str(path))))
    if "long" in kinds:
        for i in range(per_kind):
            r = rng("long", i)
            which = i % 3
            if which == 0 or not sources:
                parts, qpm, meter = band_song(r, sections=4, seconds=r.uniform(4.2, 7.5) * 60)
                bars = math.ceil(max(s + d for s, d, _, _ in parts[-1].notes) / meter[0])
                made.append(Made(f"long-{i + 1:02d}-band.mid", "long", "pretty_midi",
                                 f"band song, {bars} bars {meter[0]}/{meter[1]} at {qpm:g} qpm",
                                 lambda path, a=(parts, qpm, meter): write_pretty(a[0], a[1], a[2], path, 480)))
            elif which == 1:
                from musicmha.data.arrange import arrange
                from musicmha.errors import MusicmhaError

                for k in range(len(sources)):
                    piece_id, score = sources[(i + k) % len(sources)]
                    try:
                        arranged, plan = arrange(score, piece_id, seed + 1)
                    except MusicmhaError:
                        continue
                    break
                else:
                    continue
                seconds = arranged.end() / arranged.ticks_per_quarter * 60 / plan.tempo
                times = max(2, math.ceil(r.uniform(4.2, 6.0) * 60 / seconds))
                long_score = repeat_score(arranged, times)
                made.append(Made(f"long-{i + 1:02d}-{slug(piece_id)}-x{times}.mid", "long", piece_id,
                                 f"arrangement ({plan.groove}, {plan.tempo} qpm) played {times} times",
                                 lambda path, s=long_score: s.dump_midi(str(path))))
            else:
                qpm = r.uniform(72, 96)
                suite, ids, total = [], [], 0.0
                meter = None
                for k in range(4 * len(sources)):  # round again when too few pieces share the meter
                    piece_id, score = sources[(2 * i + k) % len(sources)]
                    if meter is not None and meter_of(score) != meter:
                        continue
                    meter = meter_of(score)
                    parts = with_left_hand(score, r)
                    suite.append(parts)
                    ids.append(piece_id)
                    total += max(s + d for part in parts for s, d, _, _ in part) * 60 / qpm
                    if total > 250:
                        break
                piano = expressive_piano(concatenate(suite, meter), meter, r, 480, qpm)
                made.append(Made(f"long-{i + 1:02d}-piano-suite.mid", "long", ",".join(ids),
                                 f"{len(suite)} pieces in a row on piano (pedal, rubato) around {qpm:.0f} qpm",
                                 lambda path, s=piano: s.dump_midi(str(path))))
    if "foreign" in kinds and sources:
        for i in range(per_kind):
            r = rng("foreign", i)
            piece_id, score = pick(i, "foreign")
            tpq = (96, 384, 120, 192)[i % 4]
            fmt = i % 2
            drums = i % 3 == 2
            made.append(Made(f"foreign-{i + 1:02d}-{slug(piece_id)}-f{fmt}-tpq{tpq}.mid", "foreign", piece_id,
                             f"mido, format {fmt}, tpq {tpq}, tempo change every beat, mid-track program change"
                             + (", zero-length drum hits" if drums else ""),
                             lambda path, a=(voices(score), meter_of(score), r, tpq, fmt, drums):
                             foreign_file(a[0], a[1], a[2], path, a[3], a[4], a[5])))
    if "game" in kinds:
        for i in range(per_kind):
            r = rng("game", i)
            parts, qpm, meter = game_loop(r, loops=r.choice((4, 6, 8)))
            resolution = (480, 96, 192)[i % 3]
            made.append(Made(f"game-{i + 1:02d}.mid", "game", "pretty_midi",
                             f"{meter[0]}/{meter[1]} loop at {qpm:g} qpm, programs {[p.program for p in parts]}, "
                             f"tpq {resolution}",
                             lambda path, a=(parts, qpm, meter, resolution): write_pretty(a[0], a[1], a[2], path, a[3])))
    return made


def describe(path: Path) -> dict:
    score = load_midi(path)
    seconds = symusic.Score.from_file(str(path), ttype="second").end()
    raw = mido.MidiFile(str(path))
    return {"tpq": score.ticks_per_quarter, "format": raw.type, "tracks": len(score.tracks),
            "notes": score.note_num(), "seconds": round(float(seconds), 1),
            "programs": sorted({-1 if t.is_drum else t.program for t in score.tracks if len(t.notes)}),
            "tempo_changes": len(score.tempos),
            "time_signature": "{}/{}".format(*meter_of(score))}


def ensure_corpus(corpus: Path) -> None:
    if (corpus / "manifest.json").is_file():
        return
    command = [*CORPUS_COMMAND[:2], "--out", str(corpus), *CORPUS_COMMAND[2:]]
    print("building the source corpus:", " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for the MIDI files and manifest.json")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/um/corpus"),
                    help="a `musicmha corpus` folder (built with the command above when it has no manifest)")
    ap.add_argument("--per-kind", type=int, default=6, help="files of each kind (default 6: 36 files)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS))
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    needs_corpus = {"arranged", "piano", "long", "foreign"} & set(kinds)
    sources = []
    if needs_corpus:
        ensure_corpus(args.corpus)
        sources = [(piece_id, load_midi(path)) for piece_id, path in test_pieces(args.corpus)]
        if not sources:
            raise SystemExit(f"{args.corpus}: no test-split pieces in its manifest")
    args.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for item in plan_files(sources, args.per_kind, args.seed, kinds):
        path = args.out / item.name
        item.write(path)
        entry = {"file": item.name, "kind": item.kind, "source": item.source, "description": item.description,
                 **describe(path)}
        entries.append(entry)
        print(f"{item.kind:9s} {item.name:48s} {entry['seconds']:6.1f} s {entry['notes']:6d} notes  {item.description}")
    (args.out / "manifest.json").write_text(json.dumps(
        {"seed": args.seed, "corpus": str(args.corpus), "test_pieces": [p for p, _ in sources],
         "files": entries}, indent=1) + "\n")
    counts = {k: sum(e["kind"] == k for e in entries) for k in kinds}
    print(f"{len(entries)} files: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
