"""benchmarks/voice_fidelity.py's measures on tiny hand-built scores whose answers are known: a note outside
its voice's range, a crossing (one note each, chords, a held note), the piece cut at a bar line, the truth
re-assigned by the library, and a continuation that dumps every note into one voice scored as bad."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import symusic

ROOT = Path(__file__).resolve().parents[2]
BAR = 4 * 480  # 4/4 at 480 ticks per quarter


@pytest.fixture()
def vf(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import voice_fidelity

    return voice_fidelity


def note(time: int, pitch: int, duration: int = 480) -> symusic.Note:
    return symusic.Note(time, duration, pitch, 80)


def duet(bars: int = 4, others: tuple = ()) -> symusic.Score:
    """Two program-0 voices in quarters, the upper on 72/74/76/74, the lower on 60/62/64/62, `bars` bars."""
    score = symusic.Score(480)
    upper, lower = symusic.Track("upper", program=0), symusic.Track("lower", program=0)
    for q in range(4 * bars):
        upper.notes.append(note(q * 480, (72, 74, 76, 74)[q % 4]))
        lower.notes.append(note(q * 480, (60, 62, 64, 62)[q % 4]))
    score.tracks.extend([upper, lower, *others])
    return score


def test_groups_are_programs_that_two_tracks_with_notes_share(vf):
    empty = symusic.Track("empty", program=0)
    viola = symusic.Track("viola", program=41)
    viola.notes.append(note(0, 50))
    drums = [symusic.Track("kick", program=0, is_drum=True), symusic.Track("hats", program=0, is_drum=True)]
    for track in drums:
        track.notes.append(note(0, 36))
    assert vf.shared_groups(duet(1, (empty, viola, *drums))) == [[0, 1, 2]]  # the empty staff is a place too
    assert vf.shared_groups(duet(1, (viola,))) == [[0, 1]]
    lone = symusic.Score(480)
    lone.tracks.extend([viola, empty])
    assert vf.shared_groups(lone) == []  # one track with notes: nothing to tell apart


def test_range_order_and_a_crossing_one_note_each(vf):
    score = duet(2)
    ref = vf.reference(score, [0, 1], 0, 2 * BAR)
    assert ref == {"ranges": {0: (72, 76), 1: (60, 64)}, "order": [0, 1]}
    t = 2 * BAR
    new = [[note(t, 71), note(t + 480, 90)], [note(t, 75), note(t + 480, 60)]]
    for track, notes in zip(score.tracks, new):
        track.notes.extend(notes)
    m = vf.measure(score, new, [0, 1], ref, tolerance=2, bars=1)
    # 71 is one below the upper range (inside with 2 of tolerance), 90 far above it; 75 is 11 above the lower
    assert m["in_range"] == 2 and m["notes"] == 4 and m["per_track"] == [2, 2]
    assert (m["onsets"], m["ordered"], m["crossings"]) == (2, 1, 1)  # at t the lower voice (75) is above 71
    assert vf.measure(score, new, [0, 1], ref, tolerance=0, bars=1)["in_range"] == 1  # 71 is out without it


def test_a_unison_is_no_crossing_and_a_lone_voice_is_not_counted(vf):
    score = duet(1)
    ref = vf.reference(score, [0, 1], 0, BAR)
    new = [[note(BAR, 66)], [note(BAR, 66), note(BAR + 480, 61)]]
    for track, notes in zip(score.tracks, new):
        track.notes.extend(notes)
    m = vf.measure(score, new, [0, 1], ref, tolerance=2, bars=1)
    assert (m["onsets"], m["ordered"], m["crossings"]) == (1, 1, 0)  # the lower voice alone at BAR + 480


def test_chords_and_held_notes_cross(vf):
    score = duet(1)
    ref = vf.reference(score, [0, 1], 0, BAR)
    new = [[note(BAR, 64), note(BAR, 67, duration=2 * 480)],  # 67 is held into the next onset
           [note(BAR, 60), note(BAR, 65), note(BAR + 480, 68)]]
    for track, notes in zip(score.tracks, new):
        track.notes.extend(notes)
    m = vf.measure(score, new, [0, 1], ref, tolerance=2, bars=1)
    # at BAR: upper {64, 67}, lower {60, 65}: 65 > 64 crosses; at BAR + 480 the upper's held 67 under the lower's 68
    assert (m["onsets"], m["ordered"], m["crossings"]) == (2, 0, 2)


def test_a_note_held_under_a_newer_one_is_not_the_voice(vf):
    score = duet(1)
    ref = vf.reference(score, [0, 1], 0, BAR)
    # a corpus artefact: the upper voice's 60 "held" for 100 quarters; its line goes on above the lower voice
    score.tracks[0].notes.append(note(BAR, 60, duration=100 * 480))
    new = [[note(BAR + 480, 76)], [note(BAR + 480, 64)]]
    for track, notes in zip(score.tracks, new):
        track.notes.extend(notes)
    m = vf.measure(score, new, [0, 1], ref, tolerance=2, bars=1)
    assert (m["onsets"], m["ordered"], m["crossings"]) == (1, 1, 0)
    score.tracks[1].notes.append(note(BAR + 480, 61))  # a chord: its top note 64 is not the upper's 76
    assert vf.measure(score, new, [0, 1], ref, tolerance=2, bars=1)["crossings"] == 0


def test_a_note_in_a_track_silent_in_the_reference_bars_is_outside(vf):
    score = duet(2, (symusic.Track("empty", program=0),))
    ref = vf.reference(score, [0, 1, 2], 0, 2 * BAR)
    assert 2 not in ref["ranges"] and ref["order"] == [0, 1]
    new = [[], [], [note(2 * BAR, 62)]]
    m = vf.measure(score, new, [0, 1, 2], ref, tolerance=12, bars=1)
    assert (m["notes"], m["in_range"], m["per_track"], m["onsets"]) == (1, 0, [0, 0, 1], 0)


def test_the_cut_and_the_truth_reassigned_by_the_library(vf):
    score = duet(6)
    prompt, truth, truth_new, cut, ref_start, n = vf.cut_piece(score, 0.5, bars=2)
    assert (cut, ref_start, n) == (3 * BAR, BAR, 2)
    assert all(n.time < cut for t in prompt.tracks for n in t.notes)
    assert [len(t.notes) for t in prompt.tracks] == [12, 12] and [len(t) for t in truth_new] == [8, 8]
    assert all(cut <= n.time < cut + 2 * BAR for t in truth_new for n in t)
    assert vf.cut_piece(score, 0.5, bars=10)[-1] == 3  # only three bars after the cut
    assert vf.cut_piece(duet(1), 0.5, bars=4) is None  # no bar after it
    again = vf.reassigned(prompt, truth_new)
    back = vf.new_per_track(again, prompt)
    assert [sorted(n.pitch for n in t) for t in back] == [sorted(n.pitch for n in t) for t in truth_new]


def test_one_voice_that_takes_everything_scores_worse_than_the_truth(vf):
    score = duet(6)
    made = vf.cut_piece(score, 0.5, bars=2)
    dumped = made[0].copy()  # a continuation whose every note went into the upper voice
    dumped.tracks[0].notes.extend(n.copy() for t in made[2] for n in t)
    results = [SimpleNamespace(score=dumped, seed=0)]
    row = vf.piece_row(score, made, results, tolerance=2) | {"piece": "duet", "split": "test", "source": None}
    out, truth = vf.total([row], "output"), vf.total([row], "truth")
    assert out["largest"] / out["measured"] == 1.0 and truth["largest"] / truth["measured"] == 0.5
    assert out["in_range"] / out["notes"] == 0.5 and truth["in_range"] == truth["notes"] == 16
    assert out["onsets"] == 0 < truth["onsets"]  # the lower voice is silent: no onset to keep in order
    assert vf.total([row], "reassigned") == truth
    table = vf.table([row])
    assert "| duet | test | 2× program 0 | 2 | 8.0 · 8.0 · 8.0 | 0.50 · 1.00 · 1.00 |" in table
    assert table.splitlines()[2].endswith("| 1.00 · 0.50 · 0.50 |") and "**held out" in table
