"""tests/user_midi.py writes valid, loadable MIDI of every kind (made here from two small synthetic pieces
instead of the corpus's test split)."""

from __future__ import annotations

import shutil

import mido
import pytest
import symusic
import user_midi as maker  # tests/user_midi.py: tests/conftest.py puts tests/ on the path

from musicmha.data.midi_io import load_midi


def _piece(voices: int, meter: tuple[int, int], bars: int) -> symusic.Score:
    tpq = 480
    score = symusic.Score(tpq)
    score.time_signatures.append(symusic.TimeSignature(0, *meter))
    score.tempos.append(symusic.Tempo(0, qpm=100.0))
    bar = tpq * 4 * meter[0] // meter[1]
    chords = ((60, 64, 67, 72), (53, 65, 69, 72), (55, 62, 67, 71), (48, 64, 67, 72))
    for v in range(voices):
        track = symusic.Track(name=f"v{v}", program=0)
        for b in range(bars):
            for k in range(2):
                pitch = chords[b % 4][3 - v] + (2 if k and v == 0 else 0)
                track.notes.append(symusic.Note(b * bar + k * bar // 2, bar // 2, pitch, 80))
        score.tracks.append(track)
    return score


@pytest.mark.slow  # ~5 s of CPU: two 4-8 minute files and mma
def test_every_kind_is_valid_loadable_midi(tmp_path):
    sources = [("synthetic/chorale", _piece(4, (4, 4), 8)), ("synthetic/tune", _piece(1, (2, 4), 8))]
    kinds = maker.KINDS if shutil.which("mma") else tuple(k for k in maker.KINDS if k != "arranged")
    made = maker.plan_files(sources, per_kind=2, seed=0, kinds=kinds)
    assert {m.kind for m in made} == set(kinds)
    facts = {}
    for item in made:
        path = tmp_path / item.name
        item.write(path)
        score = load_midi(path)  # raises MidiError for anything invalid
        assert score.note_num() > 0
        facts.setdefault(item.kind, []).append((path, score, maker.describe(path)))
    for kind in ("band", "game", "arranged"):
        for _, score, _ in facts.get(kind, []):
            drums = [t for t in score.tracks if t.is_drum]
            assert drums and len({t.program for t in score.tracks if not t.is_drum}) >= 2
    for _, score, info in facts["piano"]:
        assert info["programs"] == [0] and info["tpq"] in (480, 960) and info["tempo_changes"] > 3
        assert any(c.number == 64 for t in score.tracks for c in t.controls)
    formats = {mido.MidiFile(str(p)).type for p, _, _ in facts["foreign"]}
    assert formats == {0, 1}
    assert all(info["tpq"] in (96, 384) for _, _, info in facts["foreign"])
    for _, score, info in facts["game"]:
        assert any(80 <= t.program <= 87 for t in score.tracks if not t.is_drum)
    for _, _, info in facts["long"]:
        assert 240 <= info["seconds"] <= 8.5 * 60


def test_same_seed_same_bytes(tmp_path):
    sources = [("synthetic/chorale", _piece(4, (4, 4), 4))]
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        for item in maker.plan_files(sources, per_kind=1, seed=3, kinds=("band", "piano", "foreign", "game")):
            item.write(tmp_path / run / item.name)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names and all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)


def test_zero_length_drum_hits_survive_loading(tmp_path):
    sources = [("synthetic/chorale", _piece(4, (4, 4), 4))]
    made = maker.plan_files(sources, per_kind=3, seed=0, kinds=("foreign",))
    item = made[2]  # every third foreign file has zero-length drum hits
    item.write(tmp_path / item.name)
    score = load_midi(tmp_path / item.name)
    drums = [n for t in score.tracks if t.is_drum for n in t.notes]
    assert drums and all(n.duration == 0 for n in drums)


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        maker.main(["--out", str(tmp_path), "--kinds", "nope"])
