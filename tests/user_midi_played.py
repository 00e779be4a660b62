"""Test-split pieces played as users' files for tests/user_midi.py: on piano in two hands (pedal, rubato,
jitter), as other programs write MIDI (mido: running status, odd resolutions, tempo maps), one after
another, or repeated."""

from __future__ import annotations

import math
import random
from pathlib import Path

import mido
import symusic

from user_midi_songs import CLOSED_HAT, KICK, SNARE


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
    """Write voices with mido the way other programs do (see the module docstring: format 0 or 1,
    running status, note-on velocity 0 as note-off, a tempo change every beat, GM reset, markers)."""
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

