"""Loading MIDI safely: one function that turns a path, bytes or a Score into a `symusic.Score`, or
raises `MidiError` with a one-line reason.

Used by the data pipeline, by generation (prompts) and by the app (uploads), so it takes untrusted input:
sizes are checked before reading, the chunk structure is checked before parsing (symusic silently
accepts some truncated files), and any parser failure becomes a `MidiError`. Imports symusic only.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import symusic

from musicmha.data.voices import assign_voices
from musicmha.errors import MidiError

MAX_BYTES = 10_000_000
# Caps on what a file may hold, so one hostile file cannot take minutes or gigabytes downstream: the
# tokenizer spends time per note and per bar, the app per track. Real music stays far below them (a
# symphony has ~50k notes and a few dozen tracks); corrupt files found by the fuzz test went far past.
MAX_NOTES = 100_000
MAX_TRACKS = 1_024
MAX_QUARTERS = 50_000  # quarter notes, ~7 hours at 120 BPM; a corrupt delta time makes millions
_HEADER = b"MThd"
_TRACK = b"MTrk"


def _check_structure(data: bytes) -> None:
    """Walk the chunk headers (cheap: no event is decoded) and reject files that are not MIDI or that
    end in the middle of a chunk."""
    if not data:
        raise MidiError("empty file")
    if data[:4] != _HEADER:
        raise MidiError("not a MIDI file (no MThd header)")
    if len(data) < 14:
        raise MidiError(f"truncated MIDI header ({len(data)} bytes)")
    header_len, fmt, n_tracks, division = struct.unpack(">IHHH", data[4:14])
    if header_len < 6 or 8 + header_len > len(data):
        raise MidiError(f"truncated or malformed MIDI header (length {header_len})")
    if fmt > 2:
        raise MidiError(f"unknown MIDI format {fmt}")
    if n_tracks == 0:
        raise MidiError("no notes (the file declares no track)")
    if n_tracks > MAX_TRACKS:
        raise MidiError(f"too many tracks ({n_tracks:,}; the limit is {MAX_TRACKS:,})")
    if division == 0:
        raise MidiError("malformed MIDI header (zero ticks per quarter note)")
    if division & 0x8000:
        raise MidiError("SMPTE time division is not supported (only ticks per quarter note)")
    pos, found = 8 + header_len, 0
    while found < n_tracks:
        if pos + 8 > len(data):
            raise MidiError(f"truncated MIDI file: {found} of {n_tracks} tracks present")
        chunk_len = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        if pos + 8 + chunk_len > len(data):
            raise MidiError(f"truncated MIDI file: track {found + 1} of {n_tracks} ends past the end of the file")
        # Unknown chunk types are allowed by the standard and skipped; only MTrk chunks count as tracks.
        if data[pos:pos + 4] == _TRACK:
            found += 1
        pos += 8 + chunk_len


def _read_path(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MidiError(f"file not found: {path}") from None
    except OSError as error:
        raise MidiError(f"cannot read {path}: {error.strerror or error}") from None
    if not path.is_file():
        raise MidiError(f"not a file: {path}")
    if size == 0:
        raise MidiError("empty file")
    if size > max_bytes:
        raise MidiError(f"file larger than {max_bytes:,} bytes ({size:,} bytes)")
    try:
        return path.read_bytes()
    except OSError as error:
        raise MidiError(f"cannot read {path}: {error.strerror or error}") from None


def _check_content(score: symusic.Score) -> None:
    """Refuse scores past the caps, and times that wrapped around symusic's int32 ticks (negative)."""
    notes = count_notes(score)
    if notes == 0:
        raise MidiError("no notes")
    if notes > MAX_NOTES:
        raise MidiError(f"too many notes ({notes:,}; the limit is {MAX_NOTES:,})")
    if len(score.tracks) > MAX_TRACKS:
        raise MidiError(f"too many tracks ({len(score.tracks):,}; the limit is {MAX_TRACKS:,})")
    if score.start() < 0 or any(len(t.notes) and int(t.notes.numpy()["duration"].min()) < 0 for t in score.tracks):
        raise MidiError("event times out of range (a delta time too large for 32-bit ticks)")
    quarters = score.end() / score.ticks_per_quarter
    if quarters > MAX_QUARTERS:
        raise MidiError(f"too long: {quarters:,.0f} quarter notes (the limit is {MAX_QUARTERS:,})")


def count_notes(score: symusic.Score) -> int:
    """Number of notes in all tracks (drums included)."""
    return int(score.note_num())


def load_midi(source: str | os.PathLike | bytes | bytearray | memoryview | symusic.Score, *,
              max_bytes: int = MAX_BYTES) -> symusic.Score:
    """Load a MIDI file as a tick-based `symusic.Score`.

    `source` is a path, the raw bytes of a file or an already loaded Score (checked for notes and
    returned as is). Raises `MidiError` (never another exception type for bad input) when the input is
    not a MIDI file, is empty, truncated, larger than `max_bytes`, has no notes, or holds more notes,
    tracks or quarter notes than MAX_NOTES, MAX_TRACKS, MAX_QUARTERS.
    """
    if isinstance(source, symusic.Score):
        score = source
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if len(data) > max_bytes:
                raise MidiError(f"file larger than {max_bytes:,} bytes ({len(data):,} bytes)")
        elif isinstance(source, (str, os.PathLike)):
            data = _read_path(Path(source), max_bytes)
        else:
            raise MidiError(f"cannot load MIDI from a {type(source).__name__}")
        _check_structure(data)
        try:
            score = symusic.Score.from_midi(data)
        except Exception as error:  # symusic raises RuntimeError/ValueError/... on corrupt events
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise MidiError(f"corrupt MIDI data: {reason}") from None
    _check_content(score)
    return score


def add_notes(score: symusic.Score, tracks) -> None:
    """Add each track's notes to `score`'s tracks of the same program and drum flag (a copy of the track when
    `score` has none), in place. New notes join the instrument they were written for, so a continuation or
    an infill plays, and is drawn, on the prompt's own tracks; where several tracks share the instrument (a
    chorale's voices, a piano's hands), each note goes to the voice it continues (musicmha.data.voices)."""
    for track in tracks:
        same = [t for t in score.tracks if t.program == track.program and t.is_drum == track.is_drum]
        if not same:
            score.tracks.append(track.copy())
            continue
        for voice, notes in zip(same, assign_voices(same, track.notes), strict=True):
            if notes:
                voice.notes.extend(notes)
                voice.notes.sort()


def bar_starts(score: symusic.Score, start: int = 0, end: int | None = None) -> list[int]:
    """Bar lines in [start, end) (end: the score's end): each time signature starts a bar and repeats its
    length (numerator * 4 / denominator quarters) until the next one; 4/4 before the first."""
    tpq = score.ticks_per_quarter
    end = score.end() if end is None else end
    sigs = sorted((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures)
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    lines: list[int] = []
    for i, (time, num, den) in enumerate(sigs):
        stop = sigs[i + 1][0] if i + 1 < len(sigs) else end
        length = max(1, round(tpq * 4 * num / den))
        t = time
        while t < stop and t < end:
            if t >= start:
                lines.append(t)
            t += length
    return lines


def piece_bar_lines(score: symusic.Score) -> list[int]:
    """Ticks where bars 1..n of a piece start, then where bar n ends: n is the bar holding its last note
    onset (the bars the tokenizer writes, counted as a musician counts them)."""
    onsets = [int(n.time) for t in score.tracks for n in t.notes]
    last = max(onsets) if onsets else 0
    longest = max([4 * ts.numerator / ts.denominator for ts in score.time_signatures] + [4.0])  # in quarters
    starts = bar_starts(score, 0, last + int(longest * score.ticks_per_quarter) + 2)  # ... and the next bar line
    count = sum(1 for s in starts if s <= last)
    return starts[:count + 1]

