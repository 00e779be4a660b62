"""Which of a piece's tracks a new note belongs to, when several tracks share its instrument.

The tokenizer writes one stream with a Program per note (REMI + programs), so a chorale's four voices (all
program 0), a piano's two hands or a string section come back from the model as one instrument. Merged into
the first track of that program, every new note of a continuation would be drawn and exported as the
soprano. `assign_voices` gives each new note the voice it continues instead:

- pitched tracks: at each onset the new notes, highest first, go to the voices ordered by the range they
  are in (their last few notes), keeping that order (no voice crossing inside a chord), paying for a note
  outside a voice's range, for a leap, for a voice that still holds its note, and for crossing a voice that
  still sounds (a note above the held note of a higher voice, or below a lower one's); a voice that has played
  one note at a time takes a second note of a chord only when that beats every other choice by an octave;
- drum tracks: a drum sound goes to the track that has played it most (a kit split into kick, snare and
  hats keeps its split), else to the busiest drum track.

The registers follow the new music as it is placed, so a voice that moves keeps its line.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import symusic

SHARED_VOICE_COST = 12.0  # semitones: a second note in a voice that has played one note at a time
CHORD_VOICE_COST = 1.0  # ... and in a voice that plays chords (a piano hand, a guitar)
HELD_COST = 6.0  # a voice still holding its last note is less likely to be the one that plays now
RECENT = 6  # notes of a voice that make its current range
SILENT_COST = 8.0  # a track that has not played yet (a voice still to enter, or an empty staff) comes in last
# per voice crossed while it sounds: held notes are heard, so a line that passes one crosses audibly (without
# it, a new note above a held top voice went to the voice below, which then led above it)
CROSSING_COST = 8.0


class _Voice:
    """Where a voice is: its recent pitches (their range and centre), its last pitch, when its last note ends."""

    def __init__(self, notes: list) -> None:
        onsets = [n.time for n in notes]
        self.share_cost = CHORD_VOICE_COST if len(set(onsets)) < len(onsets) else SHARED_VOICE_COST
        notes = sorted(notes, key=lambda n: (n.time, n.pitch))[-RECENT:]
        self.recent = [n.pitch for n in notes]
        self.last = float(notes[-1].pitch) if notes else None
        self.end = max((n.time + n.duration for n in notes), default=0)
        self.silent = not notes

    def cost(self, pitch: int, onset: int) -> float:
        """Semitones outside the voice's recent range, half the leap from its last note, HELD_COST while it
        still sounds, SILENT_COST while it has not played."""
        outside = max(0, min(self.recent) - pitch, pitch - max(self.recent))
        return (outside + 0.5 * abs(pitch - self.last) + (HELD_COST if self.end > onset else 0.0)
                + (SILENT_COST if self.silent else 0.0))

    def centre(self) -> float:
        return sum(self.recent) / len(self.recent)

    def play(self, notes: list) -> None:
        self.recent = (self.recent + [n.pitch for n in notes])[-RECENT:]
        self.last = sum(n.pitch for n in notes) / len(notes)
        self.end = max(n.time + n.duration for n in notes)
        self.silent = False


def _crossings(pitch: int, j: int, voices: list[_Voice], onset: int) -> float:
    """CROSSING_COST per voice that still sounds at `onset` and that `pitch` in voice j would cross: a higher
    voice (index < j) holding a lower pitch, or a lower voice holding a higher one."""
    crossed = sum(1 for i, v in enumerate(voices) if i != j and v.end > onset and v.last is not None
                  and (v.last < pitch if i < j else v.last > pitch))
    return CROSSING_COST * crossed


def _order_preserving(chord: list, voices: list[_Voice], onset: int) -> list[int]:
    """Voice index for each note (notes highest first, voices highest first): the assignment keeping chord
    order (non-decreasing voice index) of least cost, a second note in a voice at its share_cost."""
    n, k = len(chord), len(voices)
    inf = float("inf")
    cost = [[inf] * k for _ in range(n)]
    back = [[-1] * k for _ in range(n)]
    def note_cost(i: int, j: int) -> float:  # note i of the chord in voice j, alone
        return voices[j].cost(chord[i].pitch, onset) + _crossings(chord[i].pitch, j, voices, onset)

    for j in range(k):
        cost[0][j] = note_cost(0, j)
    for i in range(1, n):
        for j in range(k):
            here = note_cost(i, j)
            for previous in range(j + 1):
                total = cost[i - 1][previous] + here + (voices[j].share_cost if previous == j else 0.0)
                if total < cost[i][j]:
                    cost[i][j], back[i][j] = total, previous
    voice = min(range(k), key=lambda j: cost[n - 1][j])
    chosen = [voice]
    for i in range(n - 1, 0, -1):
        voice = back[i][voice]
        chosen.append(voice)
    return chosen[::-1]


def _assign_pitched(tracks: list[symusic.Track], notes: list) -> list[list]:
    start = min(int(n.time) for n in notes)  # an infill's range has music after it too: look before it
    voices = [_Voice([n for n in t.notes if n.time < start]) for t in tracks]
    heard = [v for v in voices if v.recent]
    middle = sum(v.centre() for v in heard) / len(heard) if heard else 60.0
    for index, voice in enumerate(voices):  # a voice silent so far stands in the tracks' order (top staff first)
        if not voice.recent:
            voice.recent, voice.last = [middle - index], middle - index
    placed: list[list] = [[] for _ in tracks]
    by_onset: dict[int, list] = defaultdict(list)
    for note in notes:
        by_onset[int(note.time)].append(note)
    for onset in sorted(by_onset):
        chord = sorted(by_onset[onset], key=lambda n: -n.pitch)
        order = sorted(range(len(voices)), key=lambda v: -voices[v].centre())
        picks = _order_preserving(chord, [voices[v] for v in order], onset)
        for pick in set(picks):
            played = [note for note, p in zip(chord, picks, strict=True) if p == pick]
            placed[order[pick]].extend(played)
            voices[order[pick]].play(played)
    return placed


def _assign_drums(voices: list[symusic.Track], notes: list) -> list[list]:
    counts = [Counter(n.pitch for n in v.notes) for v in voices]
    busiest = max(range(len(voices)), key=lambda v: (len(voices[v].notes), -v))
    placed: list[list] = [[] for _ in voices]
    for note in notes:
        owner = max(range(len(voices)), key=lambda v: (counts[v][note.pitch], v == busiest, -v))
        placed[owner if counts[owner][note.pitch] else busiest].append(note)
    return placed


def assign_voices(voices: list[symusic.Track], notes) -> list[list]:
    """The new `notes` of one instrument split among `voices` (the piece's tracks of that instrument, in the
    piece's order): one list of notes per voice, every note in exactly one."""
    notes = list(notes)
    if len(voices) == 1 or not notes:
        return [notes] + [[] for _ in voices[1:]]
    return _assign_drums(voices, notes) if voices[0].is_drum else _assign_pitched(voices, notes)
