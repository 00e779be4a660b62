"""Piano-roll PNGs: a real PNG of the asked size, track colors and drums where the notes are, the prompt
boundary line at the right place (whichever way it is given), fast enough for the app."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import symusic
from PIL import Image

from musicmha.errors import MidiError
from musicmha.render.pianoroll import BOUNDARY_COLOR, DRUM_COLOR, PALETTE, piano_roll, piano_roll_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_score(with_drums: bool = True) -> symusic.Score:
    """120 bpm, tpq 480 (960 ticks a second): a melody from 0 s, a bass entering at exactly 2.0 s."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120))
    melody = symusic.Track("melody", program=0)
    for i in range(8):
        melody.notes.append(symusic.Note(i * 480, 480, 72 + i, 90))
    bass = symusic.Track("bass", program=33)
    bass.notes.append(symusic.Note(1920, 1920, 40, 90))
    score.tracks.extend([melody, bass])
    if with_drums:
        drums = symusic.Track("kit", program=0, is_drum=True)
        for i in range(16):
            drums.notes.append(symusic.Note(i * 240, 60, 36 if i % 2 == 0 else 42, 100))
        score.tracks.append(drums)
    return score


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def mask(array: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    return np.all(array == np.array(color, dtype=np.uint8), axis=-1)


def test_png_bytes_of_the_requested_size(tmp_path):
    path = tmp_path / "roll.png"
    data = piano_roll_png(make_score(), path, width=800, height=300)
    assert data.startswith(PNG_SIGNATURE) and path.read_bytes() == data
    assert Image.open(io.BytesIO(data)).size == (800, 300)


def test_each_track_has_its_color_and_drums_their_own_lane():
    roll = piano_roll(make_score(), width=900, height=400)
    array = pixels(roll.image)
    left, top, right, bottom = roll.plot
    notes = array[top:bottom + 1, left:right + 1]
    assert roll.colors == {0: PALETTE[0], 1: PALETTE[1], 2: DRUM_COLOR}
    assert mask(notes, PALETTE[0]).sum() > 200 and mask(notes, PALETTE[1]).sum() > 200
    assert not mask(array, PALETTE[2]).any()  # only two pitched tracks: no third color anywhere
    drum_rows = np.nonzero(mask(notes, DRUM_COLOR).any(axis=1))[0] + top
    melody_rows = np.nonzero(mask(notes, PALETTE[0]).any(axis=1))[0] + top
    bass_rows = np.nonzero(mask(notes, PALETTE[1]).any(axis=1))[0] + top
    assert drum_rows.min() > bass_rows.max() > melody_rows.max()  # drums below the lowest pitch; pitch goes up
    legend = array[:, right + 1:]
    for color in (PALETTE[0], PALETTE[1], DRUM_COLOR):
        assert mask(legend, color).sum() >= 50  # a swatch per track in the legend


def test_boundary_line_is_where_the_continuation_starts():
    roll = piano_roll(make_score(), boundary=2.0, width=900, height=400)
    array = pixels(roll.image)
    left, top, right, bottom = roll.plot
    red_columns = np.nonzero(mask(array[top:bottom + 1], BOUNDARY_COLOR).sum(axis=0) > (bottom - top) // 2)[0]
    assert len(red_columns) and red_columns.max() - red_columns.min() <= 2  # one vertical line
    assert abs(red_columns.min() - roll.x_of(2.0)) <= 1
    # The bass note starts at exactly 2.0 s: its left edge must touch the line (checks the time mapping).
    bass_columns = np.nonzero(mask(array, PALETTE[1])[top:bottom + 1, left:right + 1].any(axis=0))[0] + left
    assert abs(bass_columns.min() - red_columns.min()) <= 2
    assert red_columns.min() > left + 0.2 * (right - left)  # 2.0 s of 4.0 s: well inside, not at the edge


def test_boundary_by_tick_and_in_beats_matches_seconds():
    def line_x(roll):
        array = pixels(roll.image)
        return int(np.nonzero(mask(array, BOUNDARY_COLOR).sum(axis=0) > 50)[0].min())

    seconds = line_x(piano_roll(make_score(), boundary=2.0))
    assert line_x(piano_roll(make_score(), boundary_tick=1920)) == seconds
    assert abs(line_x(piano_roll(make_score(), boundary=4.0, unit="beats")) - seconds) <= 1


def test_no_boundary_means_no_line():
    assert not mask(pixels(piano_roll(make_score(with_drums=False)).image), BOUNDARY_COLOR).any()


def test_bad_input_is_a_midi_error():
    with pytest.raises(MidiError):
        piano_roll_png(b"definitely not MIDI")
    with pytest.raises(MidiError, match="no notes"):
        piano_roll_png(symusic.Score(480))


def test_a_minute_of_music_draws_quickly():
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120))
    for program, low in ((0, 60), (40, 67), (32, 36)):
        track = symusic.Track(program=program)
        for i in range(480):  # eighth notes for 60 s
            track.notes.append(symusic.Note(i * 240, 240, low + (i * 5) % 19, 80))
        score.tracks.append(track)
    piano_roll_png(score)  # warm up the font cache
    start = time.perf_counter()
    data = piano_roll_png(score, boundary=30.0)
    assert time.perf_counter() - start < 0.5 and data.startswith(PNG_SIGNATURE)
