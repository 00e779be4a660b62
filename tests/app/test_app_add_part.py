"""Issue 27 item 2 in the app: "Add a part". An instrument picker in musical words, over the whole piece or the
shaded bars; each result keeps every existing track note for note and adds one track of the asked program, in
a colour no other track has (the same in every roll), heard with the other parts and alone; 'Keep this one'
makes it the prompt through the history; a bad request is one line. Runs on a tiny untrained model, on short
ranges (its new notes are random, up to the part's limits)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from app_helpers import BACH, free_port, make_tiny_checkpoint, slow_down_generation, wav_samples  # noqa: E402

from musicmha.app import history  # noqa: E402
from musicmha.app.handlers import AppConfig, Handlers, button_labels, new_session  # noqa: E402
from musicmha.app.parts import PART_CHOICES, SHADED, WHOLE, AddPart  # noqa: E402
from musicmha.app.service import ModelCache, TempFiles, list_examples  # noqa: E402
from musicmha.data.midi_io import load_midi  # noqa: E402
from test_app import checkpoint, handlers  # noqa: E402,F401 (the tiny checkpoint and handlers test_app uses)

SETTINGS = dict(temperature=1.0, top_k=0, top_p=1.0, seed=7, random_seed=False, variations=1, checkpoint=None)
_CACHE = ModelCache()


@pytest.fixture
def part(handlers) -> AddPart:
    return AddPart(handlers)


def _notes(track) -> Counter:
    return Counter((n.time, n.duration, n.pitch, n.velocity) for n in track.notes)


def _tracks(score) -> list:
    return [(t.name, t.program, t.is_drum, _notes(t)) for t in score.tracks]


def _legend(roll: str) -> dict[str, str]:
    import html

    return dict(json.loads(html.unescape(re.search(r'data-tracks="([^"]*)"', roll).group(1))))


def _run(part: AddPart, prompt, instrument="bass", scope=SHADED, first=5, last=5, **overrides) -> list:
    return list(part.add_part(prompt, instrument, scope, first, last, **{**SETTINGS, **overrides}))


def _band(path: Path) -> Path:
    """Two bars of piano and drums: short enough for a tiny model to add a part over the whole piece."""
    import symusic

    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120))
    piano, drums = symusic.Track("Piano", program=0), symusic.Track("Drums", program=0, is_drum=True)
    piano.notes.extend(symusic.Note(beat * 480, 440, 60 + beat % 4, 80) for beat in range(8))
    drums.notes.extend(symusic.Note(beat * 480, 120, 36 if beat % 2 == 0 else 38, 90) for beat in range(8))
    score.tracks.extend([piano, drums])
    path.write_bytes(score.dumps_midi())
    return path


def test_the_picker_speaks_in_musical_words():
    values = [value for _, value in PART_CHOICES]
    assert values[:8] == ["bass", "drums", "piano", "strings", "guitar", "brass", "lead", "pad"]
    assert ("33: Electric Bass (finger) (General MIDI)", "33") in PART_CHOICES and len(PART_CHOICES) == 8 + 128


def test_a_bass_is_added_every_other_note_kept_with_its_own_colour_heard_alone(handlers, part):
    prompt, _, prompt_roll, *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    outputs = _run(part, prompt, variations=2, session=session)
    assert outputs[0][0].startswith("Adding bass to bar 5 (2 variations)")
    assert "adding bass to bar 5" in outputs[0][6]  # the cards wait, the old results cleared
    status, seed, *rest = outputs[-1]
    audios, rolls, midis, records = rest[0:4], rest[4:8], rest[8:12], rest[12]
    assert status.startswith("Done: 2 variation(s) of bass added to bar 5") and seed == 7
    assert [a is not None for a in audios] == [True, True, False, False]
    original = load_midi(BACH)
    prompt_colors = _legend(prompt_roll)
    for index, record in enumerate(records):
        whole = load_midi(midis[index])  # the download: every track as it was, then the new one
        assert _tracks(whole)[:4] == _tracks(original) and len(whole.tracks) == 5
        new = whole.tracks[4]
        assert (new.program, new.is_drum, new.name) == (33, False, "Electric Bass (finger) (added)")
        assert record["part"]["index"] == 4 and record["notes"] == new.note_num() > 0
        bar5 = 16 * original.ticks_per_quarter
        assert all(bar5 <= n.time and n.time + n.duration <= 20 * original.ticks_per_quarter for n in new.notes)
        alone = load_midi(record["alone"])  # the new part alone: its notes only, in the piece's tempo
        assert len(alone.tracks) == 1 and _notes(alone.tracks[0]) == _notes(new)
        assert alone.tempos[0].qpm == pytest.approx(original.tempos[0].qpm, rel=1e-3)
        # its own colour, one no track of the prompt has, the same in the short view, the whole piece and
        # every variation
        label = "Electric Bass (finger) (added) (33)"
        short, full = _legend(rolls[index]), _legend(handlers.views(True, records)[4 + index])
        assert short[label] == full[label] and short[label] not in prompt_colors.values()
        assert {k: v for k, v in full.items() if k != label} == prompt_colors
        assert short[label] == _legend(rolls[0])[label]
        assert "bar 5" in rolls[index] and "heard with the other parts here and alone below" in rolls[index]
    assert [b.value for b in button_labels(records)][:2] == ["Keep this one"] * 2
    # two players per card: with the other parts, and the new part alone (only its notes: quieter)
    players = part.players(records, False)
    alone, labels = players[:4], players[4:]
    assert [a.visible for a in alone] == [True, True, False, False] and alone[0].label.endswith("the bass alone")
    assert labels[0].label == "Variation 1: with the other parts" and labels[2].label == "Variation 3"
    value = alone[0].value  # a gradio update holds its file as FileData
    with_all, only = wav_samples(audios[0]), wav_samples(value["path"] if isinstance(value, dict) else value)
    assert only.any() and len(only) <= len(with_all) and not (len(only) == len(with_all) and (only == with_all).all())
    assert [a.visible for a in part.players([{"midi": midis[0], "seed": 1}], False)[:4]] == [False] * 4


def test_keep_makes_it_the_prompt_and_undo_brings_the_old_piece_back(handlers, part):
    prompt, *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    *_, records = _run(part, prompt, session=session)[-1]
    file, *_, info, history_md, undo, redo, session = handlers.continue_from(0, records, session)
    assert Path(file).read_bytes() == Path(records[0]["midi"]).read_bytes()
    assert "bach_bwv66.6_chorale, bass added in bar 5" in info and "(variation 1 kept, seed 7)" in info
    assert "5 tracks" in info and undo.interactive and not redo.interactive
    assert history.current(session)["steps"] == 0  # an edit, not a continuation
    file, *_, info, _, undo, redo, session = handlers.undo(session, records)
    assert Path(file).read_bytes() == BACH.read_bytes() and "4 tracks" in info and redo.interactive
    assert history.current(session)["results"] == records  # the results come back with it
    *_, info, _, _, _, session = handlers.redo(session)
    assert "bass added in bar 5" in info


def test_drums_over_the_whole_piece_of_a_band_with_drums_get_a_colour_of_their_own(handlers, part, tmp_path):
    _, file, _, prompt_roll, *_ = handlers.upload(str(_band(tmp_path / "band.mid")), new_session())
    status, _, *rest = _run(part, file, "drums", WHOLE, None, None)[-1]
    assert status.startswith("Done: 1 variation(s) of drums added to the whole piece")
    whole, record = load_midi(rest[8]), rest[12][0]
    assert _tracks(whole)[:2] == _tracks(load_midi(file)) and whole.tracks[2].is_drum
    assert record["part"]["whole"] and record["edits"] == ["+drums"]
    legend, before = _legend(rest[4]), _legend(prompt_roll)
    added = [color for name, color in legend.items() if name not in before]
    assert len(added) == 1 and added[0] not in before.values()  # not the prompt's drums' grey


@pytest.mark.parametrize("instrument, scope, first, last, message", [
    ("kazoo", WHOLE, None, None, "unknown instrument 'kazoo'"),
    ("", WHOLE, None, None, "choose the new part's instrument"),
    ("200", WHOLE, None, None, "instrument must be a GM program 0..127"),
    ("bass", SHADED, 4, 9, "bars 4-9 are outside the piece: it has bars 1-5"),
    ("bass", SHADED, 3, 2, "the range is reversed"),
    ("bass", SHADED, None, 2, "bars must be whole numbers"),
    ("bass", "everywhere", None, None, "where the part plays must be"),
])
def test_a_bad_request_is_one_line_and_changes_nothing(handlers, part, instrument, scope, first, last, message):
    session = history.push(new_session(), BACH.read_bytes(), "bach_bwv66.6_chorale")
    before = [dict(e) for e in session["entries"]]
    with pytest.raises(gr.Error, match=re.escape(message)) as caught:
        part.check(str(BACH), instrument, scope, first, last, **SETTINGS)
    assert "\n" not in caught.value.message
    with pytest.raises(gr.Error, match=re.escape(message)):  # an API caller is told before the first update
        next(part.add_part(str(BACH), instrument, scope, first, last, session=session, **SETTINGS))
    assert session["entries"] == before and handlers._jobs == {}


def test_a_part_needs_a_prompt_and_good_settings(part):
    with pytest.raises(gr.Error, match="adding a part needs a prompt"):
        part.check(None, "bass", WHOLE, None, None, **SETTINGS)
    with pytest.raises(gr.Error, match="temperature"):
        part.check(str(BACH), "bass", WHOLE, None, None, **{**SETTINGS, "temperature": -1})
    with pytest.raises(gr.Error, match="variations"):
        part.check(str(BACH), "bass", WHOLE, None, None, **{**SETTINGS, "variations": 9})
    part.check(str(BACH), "33", SHADED, 2, 3, **SETTINGS)  # a GM program by number, over the shaded bars
    part.check(str(BACH), 33.0, "the whole piece", None, None, **SETTINGS)  # the API may send these


def test_stop_keeps_what_was_made_and_every_existing_note(handlers, part, monkeypatch):
    slow_down_generation(monkeypatch, 0.05)
    run = part.add_part(str(BACH), "bass", SHADED, 2, 3, **SETTINGS)
    assert next(run)[0].startswith("Adding bass to bars 2-3")
    time.sleep(0.6)
    handlers.stop(None)
    status, _, *rest = list(run)[-1]
    assert status.startswith("Stopped after") and "of 2" in status  # progress in the range's bars
    records = rest[12]
    assert records and records[0]["partial"]
    if rest[8]:  # a kept partial part: every existing note as it was
        assert _tracks(load_midi(rest[8]))[:4] == _tracks(load_midi(BACH))


def test_use_this_seed_under_an_added_part(part, handlers):
    records = _run(part, str(BACH))[-1][-1]
    seed, random_seed, variations, first, last, status = handlers.use_seed(0, records)
    assert (seed, random_seed, variations, first, last) == (7, False, 1, 5, 5) and "'Add a part' (bass)" in status


def test_the_api_adds_a_part_and_the_other_endpoints_keep_their_parameters(checkpoint, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from musicmha.app.ui import build_app

    config = AppConfig(checkpoints=[checkpoint], checkpoint=checkpoint, examples=list_examples(),
                       files=TempFiles(tmp_path / "files"), cache=_CACHE)
    app = build_app(config).queue()
    app.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True, ssr_mode=False,
               allowed_paths=[str(config.files.root)])
    try:
        client = Client(app.local_url, verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        names = {name: [p["parameter_name"] for p in endpoints[name]["parameters"]]
                 for name in ("/generate", "/regenerate", "/add_part")}
        settings = ["temperature", "top_k", "top_p", "seed", "random_seed", "variations"]
        assert names["/generate"] == ["prompt", "unit", "length", *settings, "prompt_tokens", "checkpoint",
                                      "instruments_mode", "programs", "drums", "allow_early_end", "tempo",
                                      "time_signature", "full_view", "style", "density", "pitch_range"]
        assert names["/regenerate"] == ["prompt", "first", "last", *settings, "checkpoint", "instruments_mode",
                                        "programs", "drums", "full_view", "style", "density", "pitch_range"]
        assert names["/add_part"] == ["prompt", "instrument", "scope", "first", "last", *settings, "checkpoint",
                                      "full_view", "style", "density", "pitch_range"]
        status, seed, *rest = client.predict(handle_file(str(BACH)), "bass", SHADED, 5, 5, 1.0, 0, 1.0, 3, False,
                                             api_name="/add_part")
        assert status.startswith("Done: 1 variation(s) of bass added to bar 5") and seed == 3
        assert len(load_midi(rest[8]).tracks) == 5
        with pytest.raises(AppError) as error:
            client.predict(handle_file(str(BACH)), "kazoo", api_name="/add_part")
        assert "unknown instrument 'kazoo'" in str(error.value) and "\n" not in str(error.value)
    finally:
        app.close()
