"""`musicmha corpus` on a few real Bach chorales (seconds), and the conversion helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from musicmha.cli import main
from musicmha.data.corpus import _one_format_per_piece, available_collections
from musicmha.data.manifest import read_corpus_splits
from musicmha.data.score_to_midi import _to_midi, convert_file
from musicmha.data.midi_io import count_notes, load_midi
from musicmha.data.split import split_of


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    assert main(["corpus", "--out", str(out), "--collections", "bach", "--limit", "3", "--workers", "2"]) == 0
    return out


def test_manifest_matches_the_files(built):
    manifest = json.loads((built / "manifest.json").read_text())
    expected_sources = available_collections()["bach"][:3]
    assert sorted(p["id"] for p in manifest["pieces"]) == sorted(expected_sources)
    bach = manifest["collections"]["bach"]
    assert bach["files"] == 3 and bach["pieces"] == 3 and bach["failures"] == []
    midi_files = sorted(p.relative_to(built).as_posix() for p in built.rglob("*.mid"))
    assert midi_files == sorted(p["path"] for p in manifest["pieces"])
    for piece in manifest["pieces"]:
        assert piece["notes"] == count_notes(load_midi(built / piece["path"])) > 0
        assert piece["split"] == split_of(piece["id"])
    assert manifest["notes_total"] == sum(p["notes"] for p in manifest["pieces"]) == bach["notes"]
    assert sum(bach["splits"].values()) == 3


def test_prepare_reads_the_corpus_splits(built):
    splits = read_corpus_splits(built)
    manifest = json.loads((built / "manifest.json").read_text())
    assert splits == {p["path"]: p["split"] for p in manifest["pieces"]}
    assert read_corpus_splits(built / "bach") is None


def test_unknown_collection_is_a_one_line_error(tmp_path, capsys):
    assert main(["corpus", "--out", str(tmp_path), "--collections", "bach,nosuchcomposer"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nosuchcomposer" in err and "\n" not in err


def test_time_limit_and_parse_failure_are_reported_not_raised(tmp_path):
    rel = available_collections()["bach"][0]
    slow = convert_file(rel, str(tmp_path), 1e-6, None)
    assert len(slow) == 1 and slow[0].path is None and "longer than" in slow[0].error
    missing = convert_file("bach/does-not-exist.mxl", str(tmp_path), 30, None)
    assert missing[0].path is None and missing[0].error.startswith("parse failed")
    assert not list(tmp_path.rglob("*.mid"))


def test_multi_tune_abc_file_gives_one_piece_per_tune(tmp_path):
    rel = "ryansMammoth/PaddyMilesFricasseeReel.abc"  # small single-tune file: still parsed via ABC
    rel_opus = "miscFolk/americanfifeopus.abc"
    results = convert_file(rel_opus, str(tmp_path), 120, 4) + convert_file(rel, str(tmp_path), 60, None)
    opus = [r for r in results if r.id.startswith(rel_opus)]
    assert [r.id for r in opus] == [f"{rel_opus}#{i}" for i in range(1, 5)]
    assert all(r.path and count_notes(load_midi(tmp_path / r.path)) == r.notes > 0 for r in results)


def test_one_format_per_piece():
    files = ["b/op18/m1.krn", "b/op18/m1.mxl", "b/op18/m2.krn", "b/x.abc"]
    assert _one_format_per_piece(files) == ["b/op18/m1.mxl", "b/op18/m2.krn", "b/x.abc"]


def test_malformed_repeats_keep_the_piece_unexpanded():
    from music21 import bar, midi, note, stream

    part = stream.Part()
    for i in range(3):
        measure = stream.Measure(number=i + 1)
        measure.append(note.Note(60 + i, quarterLength=4))
        part.append(measure)
    measures = part.getElementsByClass("Measure")
    measures[0].leftBarline = bar.Repeat(direction="start")
    measures[1].leftBarline = bar.Repeat(direction="start")  # two starts, no end: music21 cannot expand
    score = stream.Score([part])
    with pytest.raises(Exception, match="repeat"):
        midi.translate.streamToMidiFile(score)
    data, why = _to_midi(score)
    assert why is not None and "repeats" in why
    notes = load_midi(data).tracks[0].notes
    assert [n.pitch for n in notes] == [60, 61, 62]  # each measure once


def test_a_second_build_reuses_the_conversion(built, caplog):
    """Same music21, time limit and piece limit: nothing is converted again (files not even rewritten)."""
    before = {p: p.stat().st_mtime_ns for p in built.rglob("*.mid")}
    manifest = json.loads((built / "manifest.json").read_text())
    with caplog.at_level("INFO", logger="musicmha.data.corpus"):
        assert main(["corpus", "--out", str(built), "--collections", "bach", "--limit", "3", "--workers", "2"]) == 0
    assert "reused the conversion of 3 of 3 files" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*.mid")} == before
    again = json.loads((built / "manifest.json").read_text())
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in manifest.items() if k != "seconds"}
