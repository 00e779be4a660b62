"""load_midi: every kind of bad input becomes a MidiError with a one-line reason."""

from __future__ import annotations

import pytest
import symusic
from datafiles import PROMPTS, zero_note_midi

from musicmha.errors import MidiError
from musicmha.data.midi_io import count_notes, load_midi


def test_loads_paths_bytes_and_scores_alike():
    path = PROMPTS[0]
    from_path = load_midi(path)
    from_bytes = load_midi(path.read_bytes())
    reference = symusic.Score(str(path))  # symusic directly, without our checks
    assert count_notes(from_path) == count_notes(from_bytes) == sum(len(t.notes) for t in reference.tracks) > 0
    assert load_midi(reference) is reference


@pytest.mark.parametrize("data, word", [
    (b"", "empty"),
    (b"RIFF....WAVEfmt ", "not a midi file"),
    (b"MThd\x00\x00", "truncated"),
])
def test_bad_bytes(data, word):
    with pytest.raises(MidiError, match="(?i)" + word) as info:
        load_midi(data)
    assert "\n" not in str(info.value)


def test_truncated_anywhere_in_the_tracks():
    data = PROMPTS[0].read_bytes()
    for cut in range(14, len(data) - 1, max(1, len(data) // 40)):
        with pytest.raises(MidiError):
            load_midi(data[:cut])


def test_zero_notes_and_size_limit(tmp_path):
    with pytest.raises(MidiError, match="no notes"):
        load_midi(zero_note_midi())
    data = PROMPTS[0].read_bytes()
    with pytest.raises(MidiError, match="larger than"):
        load_midi(data, max_bytes=len(data) - 1)
    big = tmp_path / "big.mid"
    big.write_bytes(data)
    with pytest.raises(MidiError, match="larger than"):
        load_midi(big, max_bytes=len(data) - 1)
    assert count_notes(load_midi(big, max_bytes=len(data))) > 0


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MidiError, match="not found"):
        load_midi(tmp_path / "nope.mid")
    with pytest.raises(MidiError, match="not a file"):
        load_midi(tmp_path)
    with pytest.raises(MidiError):
        load_midi(12345)  # type: ignore[arg-type]
