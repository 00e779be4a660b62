"""Arrangements: chords from melodies and voices, grooves rendered by Debian's `mma`, and the
`arrangements` collection of `musicmha corpus` built from real Bach chorales."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import symusic

from musicmha.data.arrange import (HALF, METERS, Plan, arrange, detect_chord, estimate_key, harmonize_bar, mma_source,
                                   piece_meter, pitch_weights, plan_arrangement, run_mma, transpose_chord)
from musicmha.data.grooves import load_grooves, track_kind
from musicmha.data.instruments import (BASS_PROGRAMS, COMPING_PROGRAMS, LEAD_FAMILIES, TEXTURES, lead_range,
                                       shift_key_signature)
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
    # Bar 4 (B and D) is covered by V and vii° alike: the tie goes to V. mma plays them in the drawn key.
    assert plan.chords == ["C", "F", "G", "G", "C"]
    played = [ln.split()[1] for ln in mma_source(plan, 1).splitlines() if ln[:1].isdigit()]
    assert played == [transpose_chord(c, plan.key_shift) for c in plan.chords]
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
    with pytest.raises(MusicmhaError, match="no groove for 7/8"):
        plan_arrangement(line([(C, 3.5)], meter=(7, 8)), "test/seven", seed=0, pickup=0)
    changing = line([(C, 4)], [(C, 3)])
    changing.time_signatures.append(symusic.TimeSignature(4 * TPQ, 3, 4))
    with pytest.raises(MusicmhaError, match="meter changes"):
        plan_arrangement(changing, "test/change", seed=0, pickup=0)


def test_two_four_bars_are_paired_into_one_mma_bar():
    plan = Plan("Swing", 120, 0, 0, ["C", "G", "F"], (2, 4), per=2, beats=4)
    body = [ln for ln in mma_source(plan, 1).splitlines() if ln[:1].isdigit()]
    assert body == ["1 C / G /", "2 F / F /"]
    six = Plan("68March", 160, 0, 0, ["Am", "E7"], (6, 8), per=1, beats=2)
    assert [ln for ln in mma_source(six, 1).splitlines() if ln[:1].isdigit()] == ["1 Am /", "2 E7 /"]


@needs_mma
@pytest.mark.parametrize("meter", [(9, 8), (3, 2), (4, 2), (6, 8), (2, 4)])
def test_other_meters_render_bar_for_bar(meter):
    """The accompaniment of a 9/8, 3/2, ... tune lasts its bars: one mma bar per melody bar, two, or half."""
    quarters = meter[0] * 4 / meter[1]
    tune = line(*[[(C, quarters / 3), (E, quarters / 3), (G, quarters / 3)]] * 6, meter=meter)
    score, plan = arrange(tune, f"bars/{meter}", seed=2, pickup=0)
    band = [t for t in score.tracks[1:] if len(t.notes)]
    assert min(t.notes[0].time for t in band) == 0
    assert abs(max(t.end() for t in band) - tune.end()) <= quarters * TPQ / 2, (plan.groove, plan.per)
    assert [(n.time, n.duration) for n in score.tracks[0].notes] == [(n.time, n.duration) for n in tune.tracks[0].notes]


def test_a_pickup_written_as_a_short_bar_is_a_pickup():
    score = line([(C, 4)], [(F, 2), (A, 2)], [(C, 4)], pickup=[(G - 12, 0.5)])
    score.time_signatures.clear()
    score.time_signatures.append(symusic.TimeSignature(0, 1, 8))
    score.time_signatures.append(symusic.TimeSignature(TPQ // 2, 4, 4))
    assert piece_meter(score) == ((4, 4), TPQ // 2, [])
    assert plan_arrangement(score, "test/short", seed=0).pickup == TPQ // 2


@needs_mma
def test_a_short_bar_inside_a_tune_moves_the_accompaniment_on():
    """music21 writes an ABC tune's incomplete bar as a bar of its own (1/8 in 3/4): the accompaniment waits
    for it, so the bars after it still start with their chords; a half bar is a meter change."""
    score = line([(C, 3)], [(E, 3)], [(G, 0.5)], [(C, 3)], [(F, 3)], meter=(3, 4))
    score.time_signatures.append(symusic.TimeSignature(6 * TPQ, 1, 8))
    score.time_signatures.append(symusic.TimeSignature(6 * TPQ + TPQ // 2, 3, 4))
    assert piece_meter(score) == ((3, 4), None, [(6 * TPQ, TPQ // 2)])
    arranged, plan = arrange(score, "test/short-bar", seed=0, pickup=0)
    assert len(plan.chords) == 4
    onsets = {n.time for t in arranged.tracks[1:] for n in t.notes}
    assert {0, 3 * TPQ, 6 * TPQ + TPQ // 2, 9 * TPQ + TPQ // 2} <= onsets, sorted(onsets)
    assert not any(6 * TPQ < t < 6 * TPQ + TPQ // 2 for t in onsets)
    score.time_signatures.append(symusic.TimeSignature(3 * TPQ, 3, 8))
    with pytest.raises(MusicmhaError, match="meter changes"):
        piece_meter(score)


@needs_mma
def test_the_mma_helper_renders_what_mma_renders(monkeypatch):
    """Songs forked from the helper that imported mma once are byte for byte plain `mma` runs."""
    from musicmha.data import mma as mma_module, mma_server

    for name in ("Swing", "JazzWaltz", "68March", "BossaNova1SusPlus", "Hymn"):
        text = mma_source(Plan(name, 100, 0, 0, ["C", "Am7".rstrip("7"), "Dm", "G7"] * 2, (4, 4),
                               beats=load_grooves()[name]["beats"]), 11)
        monkeypatch.setattr(mma_module, "USE_MMA_SERVER", True)
        forked = run_mma(text).dumps_midi()
        assert mma_server._helper is not None and mma_server._helper.poll() is None
        monkeypatch.setattr(mma_module, "USE_MMA_SERVER", False)
        assert run_mma(text).dumps_midi() == forked, name
    with pytest.raises(MusicmhaError, match="mma failed"):
        run_mma("Groove NoSuchGroove\n1 C\n")


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
    return [t for t in score.tracks if track_kind(t.name, t.is_drum) == "bass" and len(t.notes)]


def check_groove(groove: dict) -> list[str]:
    """What in `groove`'s rendering differs from the table: four bars of its beats (a sustained chord may
    ring up to a bar on: Evansish, MellowJazz), bass and comping, drums when a band's."""
    score = run_mma(mma_source(Plan(groove["name"], groove["tempo"][0], 0, 0, ["C", "Am", "Dm", "G7"], (4, 4),
                                    beats=groove["beats"]), 3))
    kinds = {"drums": 0, "bass": 0, "comping": 0}
    for t in score.tracks:
        kinds[track_kind(t.name, t.is_drum)] += len(t.notes)
    beats, length = groove["beats"], score.end() / score.ticks_per_quarter
    problems = [f"{groove['name']}: {kinds}" for ok in (kinds["bass"] >= 4 and kinds["comping"] >= 4,
                                                        groove["use"] != "band" or kinds["drums"] >= 4 * beats)
                if not ok]
    if not 3 * beats < length <= 5 * beats:
        problems.append(f"{groove['name']}: {length:.2f} beats")
    if not 40 <= groove["tempo"][0] < groove["tempo"][1] <= 260:
        problems.append(f"{groove['name']}: tempo {groove['tempo']}")
    return problems


def test_the_groove_table():
    table = load_grooves()
    assert len(table) > 600
    meters = {g["meter"] for g in table.values() if g["use"] == "band"}
    assert {"4/4", "3/4", "6/8", "12/8", "5/4"} <= meters
    families = {g["family"] for g in table.values()}
    assert {"rock", "swing", "bossa nova", "waltz", "march", "funk", "latin", "country", "blues", "ballad",
            "jazz"} <= families
    assert table["Swing"]["use"] == "band" and table["Hymn"]["use"] == "quiet" and table["Folk"]["use"] == "quiet"
    assert not any(w in name for name in table for w in ("Intro", "End", "Fill"))
    for melody_meter, options in METERS.items():  # every melody meter has a band groove
        assert any(g["meter"] == gm and g["use"] == "band" for gm, _ in options for g in table.values())


@needs_mma
def test_a_sample_of_grooves_renders_as_the_table_says():
    table = load_grooves()
    names = sorted(table)[::60] + ["Hymn", "68March", "Ballad68", "Jazz54", "VieneseWaltz", "BossaNova"]
    assert [p for name in names for p in check_groove(table[name])] == []


@needs_mma
@pytest.mark.slow
def test_every_groove_renders_as_the_table_says():
    assert [p for groove in load_grooves().values() for p in check_groove(groove)] == []


def test_instruments_keys_and_meters_are_drawn_from_their_families():
    leads = {p for _, programs in LEAD_FAMILIES.values() for p in programs}
    tune = line([(C, 1), (E, 1), (G, 2)], [(F, 2), (A, 2)], [(G, 4)], [(C, 4)])
    seen = {"textures": set(), "shifts": set(), "families": set()}
    for i in range(150):
        plan = plan_arrangement(tune, f"test/{i}", seed=1, pickup=0)
        tx = plan.instruments
        seen["textures"].add(tx.texture)
        seen["shifts"].add(plan.key_shift)
        seen["families"].add(plan.family)
        assert plan.groove in load_grooves() and load_grooves()[plan.groove]["meter"] == "4/4"
        low, high = load_grooves()[plan.groove]["tempo"]
        assert low <= plan.tempo <= high
        assert plan.melody_shift % 12 == plan.key_shift % 12 and -6 <= plan.key_shift <= 5
        assert all(lead_range(plan.program)[0] <= p + plan.melody_shift <= lead_range(plan.program)[1]
                   for p in (C, A))
        if tx.texture == "band":
            assert tx.drums and load_grooves()[plan.groove]["use"] == "band"
            assert plan.program in leads and tx.bass in BASS_PROGRAMS and set(tx.comping) <= set(COMPING_PROGRAMS)
        elif tx.texture == "piano":
            assert not tx.drums and tx.lead == tx.bass == tx.comping[0] < 8
        elif tx.texture == "strings":
            assert not tx.drums and tx.lead == 40 and tx.bass in (42, 43) and set(tx.comping) <= {40, 41, 48, 49}
        else:
            assert tx.texture == "brass" and tx.lead in (56, 60) and tx.bass in (57, 58)
    assert seen["textures"] == set(TEXTURES) and len(seen["shifts"]) == 12 and len(seen["families"]) > 8
    for texture in TEXTURES:  # pinned: the rest as drawn for the seed
        pinned = [plan_arrangement(tune, f"test/{i}", seed=1, pickup=0, texture=texture) for i in range(20)]
        assert {p.instruments.texture for p in pinned} == {texture}
        free = [plan_arrangement(tune, f"test/{i}", seed=1, pickup=0) for i in range(20)]
        assert all(p == f for p, f in zip(pinned, free) if f.instruments.texture == texture)
    again = plan_arrangement(tune, "test/7", seed=1, pickup=0)
    assert again == plan_arrangement(tune, "test/7", seed=1, pickup=0)
    assert shift_key_signature(0, 0, 2) == 2 and shift_key_signature(-1, 0, -1) == 4  # D major; E major
    assert shift_key_signature(0, 1, 2) == 2  # A minor up a tone: B minor, two sharps


@pytest.mark.parametrize("meter, grooves, per", [((3, 4), {"3/4"}, {1}), ((6, 8), {"6/8", "12/8"}, {1, 2}),
                                                 ((2, 4), {"4/4"}, {2}), ((3, 8), {"6/8"}, {2}),
                                                 ((12, 8), {"12/8"}, {1}), ((5, 4), {"5/4"}, {1}),
                                                 ((9, 8), {"3/4"}, {1}), ((3, 2), {"3/4"}, {HALF}),
                                                 ((6, 4), {"3/4"}, {HALF}), ((4, 2), {"4/4"}, {HALF})])
def test_each_meter_gets_its_grooves(meter, grooves, per):
    quarters = meter[0] * 4 / meter[1]
    tune = line(*[[(C, quarters / 2), (G, quarters / 2)]] * 4, meter=meter)
    found = set()
    for i in range(40):
        plan = plan_arrangement(tune, f"meter/{i}", seed=0, pickup=0)
        found.add((load_grooves()[plan.groove]["meter"], plan.per))
        assert plan.beats % plan.per == 0 and plan.meter == meter
    assert {g for g, _ in found} <= grooves and {p for _, p in found} <= per
    assert {g for g, _ in found} == grooves or meter == (6, 8)  # 12/8 grooves are few: not always drawn


@pytest.fixture(scope="module")
def arranged(tmp_path_factory) -> Path:
    if shutil.which("mma") is None:
        pytest.skip("needs Debian's mma (apt-get install mma)")
    out = tmp_path_factory.mktemp("arranged")
    assert main(["corpus", "--out", str(out), "--collections", "bach", "--limit", "2", "--workers", "2"]) == 0
    assert main(["corpus", "--out", str(out), "--collections", "arrangements", "--arrangements", "4",
                 "--workers", "2", "--seed", "5"]) == 0
    return out


@pytest.mark.slow
def test_arrangements_of_real_chorales(arranged):
    manifest = json.loads((arranged / "manifest.json").read_text())
    sources = {p["id"]: p for p in manifest["pieces"] if p["collection"] == "bach"}
    pieces = [p for p in manifest["pieces"] if p["collection"] == "arrangements"]
    stats = manifest["collections"]["arrangements"]
    assert len(pieces) == stats["pieces"] == 4 and stats["failures"] == [] and stats["seed"] == 5
    assert manifest["pieces_total"] == len(manifest["pieces"]) == 6
    assert sorted((p["source"], p["variant"]) for p in pieces) == sorted((s, v) for s in sources for v in (0, 1))
    for piece in pieces:
        source = sources[piece["source"]]
        assert piece["id"] == "arrangements/" + source["id"] + ("~1" if piece["variant"] else "")
        assert piece["split"] == source["split"]
        original, score = load_midi(arranged / source["path"]), load_midi(arranged / piece["path"])
        assert score.ticks_per_quarter == original.ticks_per_quarter
        assert [round(t.qpm, 3) for t in score.tempos] == [piece["tempo"]]
        assert piece["meter"] == "4/4" and piece["family"] == load_grooves()[piece["groove"]]["family"]
        melody, *band = score.tracks
        assert melody.name == "Melody" and melody.program == piece["program"] and not melody.is_drum
        soprano = original.tracks[0].notes
        shift = piece["melody_shift"]
        assert [(n.time, n.pitch, n.duration) for n in melody.notes] == \
            [(n.time, n.pitch + shift, n.duration) for n in soprano]
        drums = [t for t in band if t.is_drum]
        assert piece["drums"] == bool(drums) and (piece["texture"] in ("band", "brass") or not drums)
        assert not drums or (len(drums) == 1 and len(drums[0].notes) > 20)
        assert bass_tracks(score) and all(t.program == piece["bass"] for t in bass_tracks(score))
        comping = {t.program for t in band if track_kind(t.name, t.is_drum) == "comping"}
        assert comping and sorted(comping) == piece["comping"]
        # The accompaniment starts on the chorale's first downbeat (after its pickup) and lasts as long.
        downbeat = round(source["pickup"] * score.ticks_per_quarter)
        assert piece["pickup"] == source["pickup"] and piece["pickup_estimated"] is False
        assert min(t.notes[0].time for t in band) == downbeat
        assert abs(max(t.end() for t in band) - original.end()) <= 4 * score.ticks_per_quarter


def midi_files(folder: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((folder / "arrangements").rglob("*.mid"))}


@pytest.mark.slow
def test_a_rebuild_reuses_the_files_and_the_seed_changes_them(arranged):
    before = midi_files(arranged)
    assert len(before) == 4
    args = ["corpus", "--out", str(arranged), "--collections", "arrangements", "--arrangements", "4", "--workers", "1"]
    assert main([*args, "--seed", "5"]) == 0
    stats = json.loads((arranged / "manifest.json").read_text())["collections"]["arrangements"]
    assert stats["rendered"] == 0 and stats["reused"] == 4
    assert midi_files(arranged) == before  # same bytes, not even rewritten
    assert main([*args, "--seed", "6"]) == 0
    assert {p: b for p, (b, _) in midi_files(arranged).items()} != {p: b for p, (b, _) in before.items()}
    assert main([*args, "--seed", "5"]) == 0  # rendered again: byte-identical to the first build
    stats = json.loads((arranged / "manifest.json").read_text())["collections"]["arrangements"]
    assert stats["rendered"] == 4
    assert {p: b for p, (b, _) in midi_files(arranged).items()} == {p: b for p, (b, _) in before.items()}
    assert main([*args[:-2], "--arrangements", "2", "--seed", "5"]) == 0  # fewer: the others' files go
    assert len(midi_files(arranged)) == 2
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


@pytest.mark.slow
def test_the_coverage_report(arranged, capsys):
    from musicmha.data.coverage import corpus_coverage, format_coverage

    manifest = json.loads((arranged / "manifest.json").read_text())
    pieces = [p for p in manifest["pieces"] if p["collection"] == "arrangements"]
    cov = corpus_coverage(arranged, {"arrangements"})
    assert cov["pieces"] == 4 and sum(cov["grooves"].values()) == 4 and sum(cov["textures"].values()) == 4
    assert cov["drums"] == sum(p["drums"] for p in pieces) and sum(cov["meters"].values()) == 4
    assert sum(cov["leads"].values()) == 4 and sum(cov["keys"].values()) == 4
    sources = corpus_coverage(arranged, exclude={"arrangements"})
    assert sources["pieces"] == 2 and not sources["grooves"] and sources["drums"] == 0
    table = format_coverage({"bach": sources, "arranged": cov})
    assert table.startswith("| | bach | arranged |") and "| groove families | - | " in table
    assert main(["corpus", "--out", str(arranged), "--report"]) == 0
    assert "| pieces | 6 |" in capsys.readouterr().out
