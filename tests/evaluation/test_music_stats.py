"""music_stats against values worked out by hand on tiny hand-built scores (written to MIDI and read back)."""

import math

import numpy as np
import pytest
import symusic

from musicmha.evaluation import music_stats as ms

Q = 480  # ticks per quarter
BAR = 4 * Q  # 4/4


def _score(notes, *, drums=(), time_signatures=((0, 4, 4),), via_midi=True) -> symusic.Score:
    score = symusic.Score(Q)
    track = symusic.Track(name="piano", program=0, is_drum=False)
    for time, duration, pitch in notes:
        track.notes.append(symusic.Note(time, duration, pitch, 80))
    score.tracks.append(track)
    if drums:
        kit = symusic.Track(name="drums", program=0, is_drum=True)
        for time, duration, pitch in drums:
            kit.notes.append(symusic.Note(time, duration, pitch, 80))
        score.tracks.append(kit)
    for time, num, den in time_signatures:
        score.time_signatures.append(symusic.TimeSignature(time, num, den))
    # through a real MIDI file, as the driver's scores come from miditok/MIDI
    return symusic.Score.from_midi(score.dumps_midi()) if via_midi else score


# bar 0: C+E together for a quarter, then G; bar 1: the same again; bar 2: one long D; a drum hit ignored
THREE_BARS = [(0, Q, 60), (0, Q, 64), (Q, Q, 67),
              (BAR, Q, 60), (BAR, Q, 64), (BAR + Q, Q, 67),
              (2 * BAR, 2 * Q, 62)]


@pytest.fixture()
def three_bars():
    return _score(THREE_BARS, drums=[(0, Q, 36), (Q, Q, 36)])


def test_notes_array_drops_drums_and_sorts(three_bars):
    arr = ms.notes_array(three_bars)
    assert arr.shape == (7, 3)
    assert arr[:3].tolist() == [[0, Q, 60], [0, Q, 64], [Q, Q, 67]]
    assert ms.notes_array(three_bars, BAR, 2 * BAR)[:, 2].tolist() == [60, 64, 67]


def test_pitch_class_histogram(three_bars):
    h = ms.pitch_class_histogram(three_bars)
    expected = np.zeros(12)
    expected[[0, 4, 7]] = 2 / 7
    expected[2] = 1 / 7
    np.testing.assert_allclose(h, expected)
    h = ms.pitch_class_histogram(three_bars, BAR, 3 * BAR)  # C, E, G, D once each
    np.testing.assert_allclose(h[[0, 2, 4, 7]], [0.25] * 4)
    assert ms.pitch_class_histogram(three_bars, 10 * BAR, 11 * BAR).sum() == 0  # empty: all zeros
    octave = _score([(0, Q, 48), (Q, Q, 72)])  # C3 and C5: one pitch class
    assert ms.pitch_class_histogram(octave)[0] == 1.0


def test_distances_by_hand():
    p, q = np.eye(12)[0], np.eye(12)[1]
    assert ms.js_divergence(p, q) == pytest.approx(1.0)  # disjoint: 1 bit
    assert ms.l1_distance(p, q) == pytest.approx(2.0)
    assert ms.js_divergence(p, p) == pytest.approx(0.0)
    half = (np.eye(12)[0] + np.eye(12)[1]) / 2
    # m = (3/4, 1/4): 0.5 * log2(4/3) + 0.5 * (0.5 * log2(2/3) + 0.5 * log2(2)) = 0.311278...
    assert ms.js_divergence(p, half) == pytest.approx(0.5 * math.log2(4 / 3)
                                                      + 0.25 * math.log2(2 / 3) + 0.25, abs=1e-12)
    assert ms.js_divergence(p, half) == pytest.approx(0.3112781, abs=1e-6)
    assert ms.l1_distance(p, half) == pytest.approx(1.0)
    assert math.isnan(ms.js_divergence(p, np.zeros(12)))
    assert ms.js_divergence(np.array([2.0] + [0] * 11), p) == pytest.approx(0.0)  # normalized first


def test_note_density(three_bars):
    assert ms.note_density(three_bars, 0, 3 * BAR) == pytest.approx(7 / 12)  # 7 notes in 12 quarters
    assert ms.note_density(three_bars, 2 * BAR, 3 * BAR) == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        ms.note_density(three_bars, BAR, BAR)


def test_polyphony(three_bars):
    # durations 6 x Q + 2Q = 8Q; sounding union: [0, 2Q) + [BAR, BAR + 2Q) + [2BAR, 2BAR + 2Q) = 6Q
    assert ms.polyphony(three_bars) == pytest.approx(8 / 6)
    assert ms.polyphony(three_bars, 0, Q) == pytest.approx(2.0)  # C and E together
    # clipped at the range end: the D sounds Q of its 2Q inside [2BAR, 2BAR + Q)
    assert ms.polyphony(three_bars, 2 * BAR, 2 * BAR + Q) == pytest.approx(1.0)
    overlap = _score([(0, 2 * Q, 60), (Q, 2 * Q, 64)])  # 4Q of notes over a 3Q union
    assert ms.polyphony(overlap) == pytest.approx(4 / 3)
    assert math.isnan(ms.polyphony(three_bars, 10 * BAR, 11 * BAR))


def test_bar_starts_follow_time_signatures():
    score = _score([(0, Q, 60), (9 * Q, Q, 60)], time_signatures=[(0, 3, 4), (6 * Q, 2, 4)], via_midi=False)
    # 3/4 bars of 3Q from 0, then 2/4 bars of 2Q from 6Q; the score ends at 10Q
    assert ms.bar_starts(score) == [0, 3 * Q, 6 * Q, 8 * Q]
    assert ms.bar_starts(score, 3 * Q, 8 * Q) == [3 * Q, 6 * Q]
    six_eight = _score([(0, Q, 60)], time_signatures=[(0, 6, 8)], via_midi=False)
    assert ms.bar_starts(six_eight, 0, 7 * Q) == [0, 3 * Q, 6 * Q]
    no_sig = _score([(0, Q, 60)], time_signatures=[], via_midi=False)
    assert ms.bar_starts(no_sig, 0, 2 * BAR) == [0, BAR]  # 4/4 assumed


def test_repeated_bar_fraction(three_bars):
    assert ms.repeated_bar_fraction(three_bars, BAR, 3 * BAR) == pytest.approx(1 / 2)  # bar 1 repeats bar 0
    assert ms.repeated_bar_fraction(three_bars, 0, 3 * BAR) == pytest.approx(1 / 3)
    # bar 0 outside the history: nothing repeats
    assert ms.repeated_bar_fraction(three_bars, BAR, 3 * BAR, since=BAR) == 0.0
    # same pitches one tick later in the bar is not a repeat; an empty bar is not counted
    shifted = _score([(0, Q, 60), (BAR + 1, Q, 60), (3 * BAR, Q, 60)])
    assert ms.repeated_bar_fraction(shifted, BAR, 4 * BAR) == pytest.approx(1 / 2)  # bars 1 and 3; bar 2 empty
    assert math.isnan(ms.repeated_bar_fraction(three_bars, 5 * BAR, 6 * BAR))


def test_seam_top_voice_leap_and_onset_gap():
    # before the seam at BAR: a C-E-G chord on beat 3, then a lone F on beat 4 (the last onset: top F = 65);
    # after it: a rest of one quarter, then D+A together (first onset BAR + Q, top A = 69)
    score = _score([(2 * Q, Q, 60), (2 * Q, Q, 64), (2 * Q, Q, 67), (3 * Q, Q, 65),
                    (BAR + Q, Q, 62), (BAR + Q, Q, 69), (BAR + 2 * Q, Q, 50)])
    joint = ms.seam(score, BAR)
    assert joint.leap == 4.0  # |69 - 65|
    assert joint.gap == pytest.approx(2.0)  # from 3Q to BAR + Q
    # a seam just after the chord: the chord's top voice G (67) to the F (65) one quarter later
    assert ms.seam(score, 2 * Q + 1) == ms.Seam(2.0, 1.0)
    # an onset exactly at the tick is after it: from the chord (2Q) to the F (3Q)
    assert ms.seam(score, 3 * Q) == ms.Seam(2.0, 1.0)


def test_seam_counts_onsets_not_sounding_notes():
    # a long low note from 0 sounds over the seam at BAR; the last onset before it is the E at Q
    score = _score([(0, 2 * BAR, 40), (Q, Q, 64), (BAR + Q // 2, Q, 52)])
    assert ms.seam(score, BAR) == ms.Seam(12.0, 3.5)  # 64 -> 52, from Q to BAR + Q/2


def test_seam_ignores_drums():
    melody = [(3 * Q, Q, 60), (BAR + 2 * Q, Q, 67)]
    # drum hits with higher keys right at both sides of the seam, and a drum onset exactly at it
    drums = [(3 * Q + Q // 2, Q // 2, 81), (BAR, Q, 76), (BAR + Q, Q, 42)]
    assert ms.seam(_score(melody, drums=drums), BAR) == ms.Seam(7.0, 3.0)
    assert ms.seam(_score(melody, drums=drums), BAR) == ms.seam(_score(melody), BAR)


def test_seam_without_notes_on_one_side_is_nan():
    score = _score([(0, Q, 60), (Q, Q, 62)], drums=[(BAR, Q, 36)])  # only drums after the seam
    for side in (ms.seam(score, BAR), ms.seam(score, 0)):
        assert math.isnan(side.leap) and math.isnan(side.gap)
