"""A seeded, deterministic MIDI mutation engine for the fuzz tests: real files in, hostile bytes out.

Real files are parsed into raw chunks and events (running status expanded), mutated at the level of the
Standard MIDI File structure (header fields, track chunks, delta times, meta events, running status) and
written back as bytes, so every case is a file a user could upload. Byte-level mutations (bit flips,
truncations, insertions) and pure random bytes complete the set. A case is a pure function of
(family, source, seed): `make_case` rebuilds any failing case from the name the fuzz test prints.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

Event = tuple[int, bytes]  # (delta ticks, the event's bytes with its status byte)


@dataclass
class Midi:
    fmt: int
    division: int
    tracks: list[list[Event]]


def _read_vlq(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return value, pos


def vlq(value: int) -> bytes:
    """Variable-length quantity; values past 28 bits are written anyway (5+ bytes): hostile on purpose."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def parse(data: bytes) -> Midi:
    """Parse a well-formed file (the real prompts) into events with running status made explicit."""
    _, fmt, n_tracks, division = struct.unpack(">IHHH", data[4:14])
    pos, tracks = 14, []
    while len(tracks) < n_tracks:
        kind, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        body, pos = data[pos + 8:pos + 8 + length], pos + 8 + length
        if kind != b"MTrk":
            continue
        events, i, status = [], 0, 0
        while i < len(body):
            delta, i = _read_vlq(body, i)
            if body[i] & 0x80:
                status, i = body[i], i + 1
            if status == 0xFF:
                length_, j = _read_vlq(body, i + 1)
                events.append((delta, bytes([0xFF]) + body[i:j + length_]))
                i = j + length_
            elif status in (0xF0, 0xF7):
                length_, j = _read_vlq(body, i)
                events.append((delta, bytes([status]) + body[i:j + length_]))
                i = j + length_
            else:
                size = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
                events.append((delta, bytes([status]) + body[i:i + size]))
                i += size
        tracks.append(events)
    return Midi(fmt, division, tracks)


def track_bytes(events: list[Event], running_status: bool = False) -> bytes:
    out, last = bytearray(), None
    for delta, event in events:
        out += vlq(delta)
        if running_status and event[0] < 0xF0 and event[0] == last:
            out += event[1:]
        else:
            out += event
        last = event[0] if event[0] < 0xF0 else None
    return bytes(out)


def write(midi: Midi, *, running_status: bool = False, n_tracks: int | None = None) -> bytes:
    header = struct.pack(">4sIHHH", b"MThd", 6, midi.fmt, len(midi.tracks) if n_tracks is None else n_tracks,
                         midi.division)
    chunks = b"".join(struct.pack(">4sI", b"MTrk", len(body)) + body
                      for body in (track_bytes(t, running_status) for t in midi.tracks))
    return header + chunks


# --- structural mutations: each takes (parsed real file, rng) and returns the bytes of one case ----------
END = (0, b"\xff\x2f\x00")


def _note_tracks(m: Midi) -> list[list[Event]]:
    return [t for t in m.tracks if any(e[0] & 0xF0 == 0x90 for _, e in t)] or m.tracks


def huge_delta(m: Midi, rng: random.Random) -> bytes:
    track = rng.choice(_note_tracks(m))
    # One huge delta; or enough of them that the sum passes 2**31 ticks; or one with 1 tick per beat.
    style = rng.randrange(3)
    for i in rng.sample(range(len(track)), min(len(track), 24 if style == 1 else 1)):
        big = rng.choice([0x0FFFFFFF, 2**32 - 1, 2**35]) if style == 0 else 0x0FFFFFFF  # 4-byte VLQ max
        track[i] = (big, track[i][1])
    if style == 2:
        m.division = 1
    return write(m)


def absurd_tempo(m: Midi, rng: random.Random) -> bytes:
    uspq = rng.choice([0, 1, 60, 0xFFFFFF, 60_000])  # 0 / 1 µs per beat, 16.7 s per beat, 1000 BPM
    tempo = (0, b"\xff\x51\x03" + uspq.to_bytes(3, "big"))
    m.tracks[0] = [e for e in m.tracks[0] if e[1][:2] != b"\xff\x51"]
    m.tracks[0].insert(0, tempo)
    if rng.random() < 0.5:  # and tempo changes all along, a thousand of them
        m.tracks[0][1:1] = [(1, tempo[1])] * 1000
    return write(m)


def zero_ticks_per_beat(m: Midi, rng: random.Random) -> bytes:
    m.division = rng.choice([0, 1, 0x7FFF])
    return write(m)


def smpte_timing(m: Midi, rng: random.Random) -> bytes:
    fps = rng.choice([24, 25, 29, 30, 0, 127])
    m.division = ((256 - fps) & 0xFF) << 8 | rng.choice([0, 4, 40, 80, 255])
    return write(m)


def format_2(m: Midi, rng: random.Random) -> bytes:
    m.fmt = rng.choice([2, 2, 0, 3, 0xFFFF])  # format 0 with many tracks is a lie too
    return write(m)


def thousands_of_tracks(m: Midi, rng: random.Random) -> bytes:
    note_track = rng.choice(_note_tracks(m))
    count = rng.choice([1000, 4000, 65535])
    small = [(0, b"\xc0" + bytes([rng.randrange(128)])), (0, b"\x90\x3c\x40"), (10, b"\x80\x3c\x00"), END]
    m.tracks = [note_track] + [small if rng.random() < 0.5 else [END] for _ in range(count - 1)]
    declared = rng.choice([count, count, 65535])
    return write(m, n_tracks=declared)


def _drop_note_offs(track: list[Event], rng: random.Random, share: float) -> list[Event]:
    out, carry = [], 0
    for delta, event in track:
        is_off = event[0] & 0xF0 == 0x80 or (event[0] & 0xF0 == 0x90 and len(event) > 2 and event[2] == 0)
        if is_off and rng.random() < share:
            carry += delta  # keep the timing of what follows
            continue
        out.append((delta + carry, event))
        carry = 0
    return out


def notes_without_note_off(m: Midi, rng: random.Random) -> bytes:
    share = rng.choice([0.3, 1.0])
    m.tracks = [_drop_note_offs(t, rng, share) for t in m.tracks]
    return write(m)


def zero_length_notes(m: Midi, rng: random.Random) -> bytes:
    for track in m.tracks:  # every note-on followed at once by its note-off
        out = []
        for delta, event in track:
            if event[0] & 0xF0 == 0x90 and event[2] > 0:
                out += [(delta, event), (0, bytes([0x80 | event[0] & 0x0F, event[1], 0]))]
            elif event[0] & 0xF0 == 0x80 or (event[0] & 0xF0 == 0x90 and event[2] == 0):
                out.append((delta, b"\xff\x01\x00"))  # keep the time, lose the event
            else:
                out.append((delta, event))
        track[:] = out
    return write(m)


def high_velocity_running_status(m: Midi, rng: random.Random) -> bytes:
    """Velocities/pitches of 128+ inside running status: the data byte reads as a new status byte."""
    for track in m.tracks:
        for i, (delta, event) in enumerate(track):
            if event[0] & 0xF0 in (0x80, 0x90) and rng.random() < 0.3:
                k = rng.choice([1, 2])
                track[i] = (delta, event[:k] + bytes([rng.randrange(128, 256)]) + event[k + 1:])
    return write(m, running_status=True)


def bad_lengths(m: Midi, rng: random.Random) -> bytes:
    """Meta/sysex lengths and chunk lengths that lie, VLQs that never end, pitch/program bytes past 127."""
    track = rng.choice(m.tracks)
    choice = rng.randrange(4)
    if choice == 0:
        track.insert(rng.randrange(len(track)), (0, b"\xff\x03" + vlq(rng.choice([2**21, 2**27, 1000]))))
    elif choice == 1:
        track.insert(rng.randrange(len(track)), (0, b"\xf0" + vlq(2**27) + b"\x7e\xf7"))
    elif choice == 2:
        # a meta event whose length VLQ never ends
        track.insert(rng.randrange(len(track)), (0, b"\xff" * rng.choice([5, 64])))
    else:
        data = bytearray(write(m))
        pos = 14 + 4  # first track's length field: claim more or less than there is
        struct.pack_into(">I", data, pos, rng.choice([0, 1, 0xFFFFFFFF, struct.unpack(">I", data[pos:pos + 4])[0] - 3]))
        return bytes(data)
    return write(m)


def many_notes(m: Midi, rng: random.Random) -> bytes:
    """Tens of thousands to a million notes (or one very long one) in a file under the size limit."""
    if rng.random() < 0.5:
        count = rng.choice([30_000, 200_000, 1_000_000])
        # Written as bytes, not events (fast): on, then on/off pairs 1 tick apart in running status, ~6 MB.
        body = b"\x00\x90\x3c\x40" + b"\x01\x3c\x00\x00\x3c\x40" * (count - 1) + b"\x01\x3c\x00\x00\xff\x2f\x00"
        data = bytearray(write(m, n_tracks=len(m.tracks) + 1))
        return bytes(data) + struct.pack(">4sI", b"MTrk", len(body)) + body
    m.tracks.append([(0, b"\x90\x3c\x40"), (0x0FFFFFFF, b"\x80\x3c\x00"), END])
    return write(m, running_status=True)


STRUCTURAL: dict[str, Callable[[Midi, random.Random], bytes]] = {
    f.__name__: f for f in (huge_delta, absurd_tempo, zero_ticks_per_beat, smpte_timing, format_2,
                            thousands_of_tracks, notes_without_note_off, zero_length_notes,
                            high_velocity_running_status, bad_lengths, many_notes)}


# --- byte-level mutations --------------------------------------------------------------------------------
def bit_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 4, 16])):
        i = rng.randrange(14 if rng.random() < 0.8 else 0, len(out))  # mostly past the header: deeper
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncation(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def inserted_bytes(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    extra = rng.randbytes(rng.choice([1, 3, 17, 300]))
    return data[:i] + extra + data[i:]


BYTE_LEVEL: dict[str, Callable[[bytes, random.Random], bytes]] = {
    f.__name__: f for f in (bit_flips, truncation, inserted_bytes)}


def random_bytes(rng: random.Random) -> bytes:
    data = rng.randbytes(rng.choice([0, 1, 13, 14, 100, 4000]))
    if rng.random() < 0.5:  # a valid header on random tracks gets past the first check
        data = struct.pack(">4sIHHH", b"MThd", 6, rng.randrange(3), rng.randrange(1, 8), 480) + b"MTrk" + \
            struct.pack(">I", len(data)) + data
    return data


FAMILIES = [*STRUCTURAL, *BYTE_LEVEL, "random_bytes"]


@dataclass(frozen=True)
class Case:
    family: str
    source: str  # the real file it starts from ("" for random bytes)
    seed: int

    @property
    def name(self) -> str:
        return f"{self.family}:{self.source or '-'}:{self.seed}"


def make_case(case: Case, sources: dict[str, bytes]) -> bytes:
    """The bytes of one case: deterministic in (family, source, seed)."""
    rng = random.Random(f"{case.name}")
    if case.family == "random_bytes":
        return random_bytes(rng)
    original = sources[case.source]
    if case.family in BYTE_LEVEL:
        return BYTE_LEVEL[case.family](original, rng)
    return STRUCTURAL[case.family](parse(original), rng)


def all_cases(sources: list[str], per_family: int) -> list[Case]:
    """`per_family` cases of every family, cycling through the real sources."""
    cases = []
    for family in FAMILIES:
        for seed in range(per_family):
            source = "" if family == "random_bytes" else sources[seed % len(sources)]
            cases.append(Case(family, source, seed))
    return cases
