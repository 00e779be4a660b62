"""New notes of an instrument that several tracks share go back to the voice they continue
(musicmha.data.voices through midi_io.add_notes): checked against the truth of real pieces cut in two, where
the second half, merged into one track per instrument as the model writes it, must find its own tracks."""

from pathlib import Path

import pytest
import symusic

from musicmha.data.midi_io import add_notes, bar_starts
from musicmha.data.voices import assign_voices

PROMPTS = Path(__file__).resolve().parents[2] / "data" / "prompts"


def _cut(score: symusic.Score, fraction: float):
    """(the piece before a bar line, its notes after it merged per instrument, the truth: note key -> track)."""
    lines = bar_starts(score)
    cut = lines[int(len(lines) * fraction)]
    before = score.copy()
    truth, merged = {}, {}
    for index, track in enumerate(before.tracks):
        later = [n for n in track.notes if n.time >= cut]
        kept = [n for n in track.notes if n.time < cut]
        track.notes.clear()
        track.notes.extend(kept)
        instrument = merged.setdefault((track.program, track.is_drum),
                                       symusic.Track(program=track.program, is_drum=track.is_drum))
        for note in later:
            truth.setdefault((note.time, note.pitch), set()).add(index)
            instrument.notes.append(note.copy())
    return before, list(merged.values()), truth


@pytest.mark.parametrize("name, least", [("bach_bwv66.6_chorale", 0.9), ("beethoven_op18no1_quartet", 0.8),
                                         ("joplin_maple_leaf_rag_piano", 0.85), ("monteverdi_madrigal_3_1", 0.85)])
def test_the_second_half_of_a_piece_finds_its_own_voices(name, least):
    score = symusic.Score(str(PROMPTS / f"{name}.mid"))
    before, new, truth = _cut(score, 0.5)
    add_notes(before, new)
    right = total = 0
    for index, track in enumerate(before.tracks):
        for note in track.notes:
            if (note.time, note.pitch) in truth:
                total += 1
                right += index in truth[(note.time, note.pitch)]
    assert total == sum(len(t.notes) for t in new)  # every note placed once
    assert right / total >= least, f"{right} of {total} in their own voice"
    # the old merge put every note into the first track of its instrument: far fewer right
    first_track = sum(1 for key, owners in truth.items() if min(owners) == 0) / len(truth)
    assert right / total > first_track + 0.2


def test_a_chord_spreads_over_the_voices_in_order_and_lines_are_followed():
    upper, lower = symusic.Track("right", program=0), symusic.Track("left", program=0)
    upper.notes.append(symusic.Note(0, 100, 72, 80))
    lower.notes.append(symusic.Note(0, 100, 48, 80))
    notes = [symusic.Note(100, 100, 74, 80), symusic.Note(100, 100, 50, 80),  # a chord: one note each
             symusic.Note(200, 100, 55, 80),  # the left hand alone, nearer its own line
             symusic.Note(300, 100, 76, 80), symusic.Note(300, 100, 79, 80)]  # two notes high: the right hand
    placed = assign_voices([upper, lower], notes)
    assert sorted(n.pitch for n in placed[0]) == [74, 76, 79]
    assert sorted(n.pitch for n in placed[1]) == [50, 55]


def test_drum_sounds_go_to_the_track_that_plays_them():
    kick, hats = symusic.Track("kick", is_drum=True), symusic.Track("hats", is_drum=True)
    for t in range(0, 960, 240):
        kick.notes.append(symusic.Note(t, 60, 36, 100))
        hats.notes.append(symusic.Note(t, 60, 42, 80))
        hats.notes.append(symusic.Note(t + 120, 60, 42, 80))
    notes = [symusic.Note(960, 60, 36, 100), symusic.Note(960, 60, 42, 80), symusic.Note(1080, 60, 38, 90)]
    placed = assign_voices([kick, hats], notes)
    assert [n.pitch for n in placed[0]] == [36]
    assert sorted(n.pitch for n in placed[1]) == [38, 42]  # a new sound: the busiest drum track


def test_one_track_takes_everything():
    track = symusic.Track(program=0)
    notes = [symusic.Note(0, 10, 60, 80), symusic.Note(0, 10, 64, 80)]
    assert assign_voices([track], notes) == [notes]


def _line(name: str, pitches: list[int], long_last: int = 0) -> symusic.Track:
    track = symusic.Track(name, program=0)
    for q, pitch in enumerate(pitches):
        track.notes.append(symusic.Note(q * 480, long_last if long_last and q == len(pitches) - 1 else 480,
                                        pitch, 80))
    return track


@pytest.mark.parametrize("held", [True, False])
def test_a_line_does_not_cross_a_voice_that_still_sounds(held):
    """Found on a Monteverdi continuation (benchmarks/voice_fidelity.py): the upper voice holds a G while the
    lower one has stopped; new notes above the G went to the lower voice, which then crossed above it. They
    belong to the upper voice. When the upper voice has stopped too, the same notes still go there (nearer its
    range), so the rule is about crossing a sounding note, not about the held note's cost."""
    upper = _line("upper", [67, 69, 67, 67], long_last=1920 if held else 0)
    lower = _line("lower", [64, 65, 66, 64])
    new = [symusic.Note(1920, 480, 72, 80), symusic.Note(2400, 480, 74, 80)]
    placed = assign_voices([upper, lower], new)
    assert [n.pitch for n in placed[0]] == [72, 74] and placed[1] == []
    # and a note below the held upper voice, in the lower one's range, still goes to the lower voice
    placed = assign_voices([upper, lower], [symusic.Note(1920, 480, 62, 80)])
    assert [n.pitch for n in placed[1]] == [62]
