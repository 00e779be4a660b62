"""Arrangements: chords from melodies and voices, grooves rendered by Debian's `mma`, and the
`arrangements` collection of `musicmha corpus` built from real Bach chorales."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import symusic

from musicmha.data.arrange import (GROOVE_BEATS, GROOVES, Plan, detect_chord, estimate_key, harmonize_bar, mma_source,
                              pitch_weights, plan_arrangement, run_mma)
from musicmha.cli import main
from musicmha.errors import MusicmhaError
from musicmha.data.midi_io import load_midi

needs_mma = pytest.mark.skipif(shutil.which("mma") is None, reason="needs Debian's mma (apt-get install mma)")
TPQ = 480
C, D, E, F, G, A, B = 60, 62, 64, 65, 67, 69, 71


def line(*bars: list[tuple[int, float]], meter: tuple[int, int] = (4, 4), pickup: list[tuple[int, float]] = ()):
    """A one-track score: an optional pickup, then bars of (pitch, quarter notes)."""
    score = symusic.Score(TPQ)
    score.time_signatures.append(symusic.TimeSignature(0, *meter))
    track = symusic.Track(name="tune", program=0)
    t = 0
    for notes in (list(pickup), *bars):
        for pitch, quarters in notes:
            track.notes.append(symusic.Note(t, int(quarters * TPQ), pitch, 90))
            t += int(quarters * TPQ)
    score.tracks.append(track)
    return score


def weights(*notes: tuple[int, float]) -> list[float]:
    w = [0.0] * 12
    for pitch, quarters in notes:
        w[pitch % 12] += quarters
    return w


def test_harmonizing_a_c_major_melody_gives_tonic_subdominant_dominant():
    score = line([(C, 1), (E, 1), (G, 1), (C + 12, 1)], [(F, 1), (A, 1), (C + 12, 2)],
                 [(G, 1), (B, 1), (D + 12, 2)], [(B, 2), (D, 2)], [(C + 12, 4)])
    plan = plan_arrangement(score, "test/c-major", seed=0, pickup=0)
    # Bar 4 (B and D) is covered by V and vii° alike: the tie goes to V.
    assert plan.chords == ["C", "F", "G", "G", "C"]
    assert estimate_key(pitch_weights(list(score.tracks[0].notes), 0, score.end())) == (0, "major")
    assert harmonize_bar(weights((C, 1)), 0, "major") == "C"  # I, IV and vi cover it: I wins
    assert harmonize_bar(weights((A, 2), (C, 1)), 9, "minor") == "Am"
    assert harmonize_bar(weights((B, 1), (E, 1), (G + 1, 1)), 9, "minor") == "E"  # harmonic-minor V


def test_a_pickup_moves_the_bars():
    score = line([(C, 4)], [(F, 2), (A, 2)], [(C, 4)], pickup=[(G - 12, 1)])
    plan = plan_arrangement(score, "test/pickup", seed=0, pickup=1.0)
    assert plan.pickup == TPQ and plan.chords == ["C", "F", "C"]
    guessed = plan_arrangement(score, "test/pickup", seed=0)  # no manifest value: estimated from the notes
    assert guessed.pickup == TPQ


def test_chord_detection_from_four_voices():
    assert detect_chord(weights((G - 12, 4), (B, 4), (D + 12, 4), (F + 12, 4))) == "G7"
    assert detect_chord(weights((C - 12, 4), (E, 4), (G, 4), (C + 12, 4))) == "C"
    assert detect_chord(weights((A - 12, 4), (C, 4), (E, 4), (A, 4))) == "Am"
    assert detect_chord(weights((B - 12, 4), (D, 4), (F, 4), (B, 4))) == "Bdim"
    # A passing F (an eighth against whole notes) does not make a seventh chord.
    assert detect_chord(weights((G - 12, 4), (B, 4), (D + 12, 4), (G + 12, 3.5), (F + 12, 0.5))) == "G"
    # The bass decides between the two readings of A-C-E-G.
    assert detect_chord(weights((A, 4), (C, 4), (E, 4), (G, 4)), weights((C - 24, 4))) == "C"
    assert detect_chord([0.0] * 12) is None


def test_meters_without_a_groove_are_refused():
    with pytest.raises(MusicmhaError, match="no groove for 5/4"):
        plan_arrangement(line([(C, 5)], meter=(5, 4)), "test/five", seed=0, pickup=0)
    changing = line([(C, 4)], [(C, 3)])
    changing.time_signatures.append(symusic.TimeSignature(4 * TPQ, 3, 4))
    with pytest.raises(MusicmhaError, match="meter changes"):
        plan_arrangement(changing, "test/change", seed=0, pickup=0)


def test_two_four_bars_are_paired_into_one_mma_bar():
    plan = Plan("Swing", 120, 0, 0, ["C", "G", "F"], (2, 4))
    body = [ln for ln in mma_source(plan, 1).splitlines() if ln[:1].isdigit()]
    assert body == ["1 C / G /", "2 F / F /"]
    six = Plan("68March", 160, 0, 0, ["Am", "E7"], (6, 8))
    assert [ln for ln in mma_source(six, 1).splitlines() if ln[:1].isdigit()] == ["1 Am /", "2 E7 /"]


def test_missing_mma_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MusicmhaError) as error:
        run_mma("Groove Swing\n1 C\n")
    assert "apt-get install mma" in str(error.value) and "\n" not in str(error.value)
    assert main(["corpus", "--out", str(tmp_path), "--collections", "arrangements"]) == 2
    err = capsys.readouterr().err.strip()
    assert "apt-get install mma" in err and "\n" not in err


def test_a_full_build_without_mma_keeps_the_conversion(monkeypatch, tmp_path, caplog):
    from musicmha.data import corpus

    monkeypatch.setattr(corpus, "_convert", lambda cfg: {"converted": True})
    monkeypatch.setenv("PATH", str(tmp_path))
    assert corpus.build_corpus(corpus.CorpusConfig(out=tmp_path)) == {"converted": True}
    assert "apt-get install mma" in caplog.text


@needs_mma
def test_arranging_without_converted_sources_says_to_convert_first(tmp_path, capsys):
    assert main(["corpus", "--out", str(tmp_path), "--collections", "arrangements"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"musicmha corpus --out {tmp_path}" in err


def bass_tracks(score: symusic.Score) -> list[symusic.Track]:
    return [t for t in score.tracks if not t.is_drum and 32 <= t.program < 40 and len(t.notes)]


@needs_mma
@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(GROOVES))
def test_every_groove_renders_drums_bass_and_comping(family):
    for groove, low, high in GROOVES[family]:
        beats = GROOVE_BEATS.get(groove, int(family[0]))
        meter = tuple(int(x) for x in family.split("/"))
        score = run_mma(mma_source(Plan(groove, low, 0, 0, ["C", "Am", "Dm", "G7"], meter), 3))
        names = [t.name for t in score.tracks]
        assert any(t.is_drum and len(t.notes) for t in score.tracks), (groove, names)
        assert bass_tracks(score), (groove, names)
        assert any(not t.is_drum and t not in bass_tracks(score) and len(t.notes) > 4 for t in score.tracks), groove
        # Four bars of `beats` quarter notes each (a ring-out may pass the end a little).
        assert 3 * beats < score.end() / score.ticks_per_quarter <= 4 * beats + 1, (groove, score.end())
        assert low < high


@pytest.fixture(scope="module")
def arranged(tmp_path_factory) -> Path:
    if shutil.which("mma") is None:
        pytest.skip("needs Debian's mma (apt-get install mma)")
    out = tmp_path_factory.mktemp("arranged")
    assert main(["corpus", "--out", str(out), "--collections", "bach", "--limit", "2", "--workers", "2"]) == 0
    assert main(["corpus", "--out", str(out), "--collections", "arrangements", "--arrangements", "2",
                 "--workers", "2", "--seed", "5"]) == 0
    return out


@pytest.mark.slow
def test_arrangements_of_real_chorales(arranged):
    manifest = json.loads((arranged / "manifest.json").read_text())
    sources = {p["id"]: p for p in manifest["pieces"] if p["collection"] == "bach"}
    pieces = [p for p in manifest["pieces"] if p["collection"] == "arrangements"]
    stats = manifest["collections"]["arrangements"]
    assert len(pieces) == stats["pieces"] == 2 and stats["failures"] == [] and stats["seed"] == 5
    assert manifest["pieces_total"] == len(manifest["pieces"]) == 4
    for piece in pieces:
        source = sources[piece["source"]]
        assert piece["id"] == "arrangements/" + source["id"]
        assert piece["split"] == source["split"]
        original, score = load_midi(arranged / source["path"]), load_midi(arranged / piece["path"])
        assert score.ticks_per_quarter == original.ticks_per_quarter
        assert [round(t.qpm, 3) for t in score.tempos] == [piece["tempo"]]
        melody, *band = score.tracks
        assert melody.name == "Melody" and melody.program == piece["program"] and not melody.is_drum
        soprano = original.tracks[0].notes
        assert [(n.time, n.pitch, n.duration) for n in melody.notes] == [(n.time, n.pitch, n.duration) for n in soprano]
        drums = [t for t in band if t.is_drum]
        assert len(drums) == 1 and len(drums[0].notes) > 20
        assert bass_tracks(score) and any(not t.is_drum and t not in bass_tracks(score) for t in band)
        # The accompaniment starts on the chorale's first downbeat (after its pickup) and lasts as long.
        downbeat = round(source["pickup"] * score.ticks_per_quarter)
        assert piece["pickup"] == source["pickup"] and piece["pickup_estimated"] is False
        assert min(t.notes[0].time for t in band) == downbeat
        assert abs(max(t.end() for t in band) - original.end()) <= 4 * score.ticks_per_quarter


@pytest.mark.slow
def test_arrangements_rebuild_byte_identical_and_the_seed_changes_them(arranged, tmp_path):
    before = {p: p.read_bytes() for p in sorted((arranged / "arrangements").rglob("*.mid"))}
    assert len(before) == 2
    args = ["corpus", "--out", str(arranged), "--collections", "arrangements", "--arrangements", "2", "--workers", "1"]
    assert main([*args, "--seed", "5"]) == 0
    assert {p: p.read_bytes() for p in sorted((arranged / "arrangements").rglob("*.mid"))} == before
    assert main([*args, "--seed", "6"]) == 0
    assert {p: p.read_bytes() for p in sorted((arranged / "arrangements").rglob("*.mid"))} != before
    assert main([*args, "--seed", "5"]) == 0  # leave the fixture as it was


@pytest.mark.slow
def test_converting_again_keeps_the_arrangements_listed(arranged):
    """A later conversion rewrites the manifest; the arrangements on disk must stay listed with their
    sources' splits, or `prepare` would split them by their own paths."""
    before = json.loads((arranged / "manifest.json").read_text())
    assert main(["corpus", "--out", str(arranged), "--collections", "bach", "--limit", "2", "--workers", "2"]) == 0
    after = json.loads((arranged / "manifest.json").read_text())
    keep = [p for p in before["pieces"] if p["collection"] == "arrangements"]
    assert [p for p in after["pieces"] if p["collection"] == "arrangements"] == keep
    assert after["collections"]["arrangements"] == before["collections"]["arrangements"]
