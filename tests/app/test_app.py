"""The web app in-process: handlers called as plain functions, with a tiny untrained checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from app_helpers import BACH, make_tiny_checkpoint, slow_down_generation  # noqa: E402

from musicmha.app.about import about_markdown, about_summary  # noqa: E402
from musicmha.app import history  # noqa: E402
from musicmha.app.handlers import AppConfig, Handlers, new_session  # noqa: E402
from musicmha.app.settings import CHOOSE, NEW, page_request  # noqa: E402
from musicmha.errors import ConfigError  # noqa: E402
from musicmha.generation.request import GenerationRequest  # noqa: E402
from musicmha.app.service import ModelCache, TempFiles, list_examples  # noqa: E402
from musicmha.checkpoint import list_checkpoints  # noqa: E402
from musicmha.data.midi_io import load_midi  # noqa: E402
from musicmha.generation.options import SamplingOptions  # noqa: E402

SETTINGS = dict(unit="tokens", length=48, temperature=1.0, top_k=0, top_p=1.0, seed=7, random_seed=False,
                variations=1, prompt_tokens=0, checkpoint=None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture
def handlers(checkpoint, tmp_path) -> Handlers:
    return Handlers(AppConfig(checkpoints=[checkpoint], checkpoint=checkpoint, examples=list_examples(),
                              files=TempFiles(tmp_path / "files"), cache=_CACHE))


_CACHE = ModelCache()  # shared by the tests like by the app's sessions: the model loads once


def _wav(path: str) -> tuple:
    """(rate, int16 samples, one column per channel) of a WAV the app wrote."""
    import wave

    import numpy as np

    with wave.open(path) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return wav.getframerate(), frames.reshape(-1, wav.getnchannels())


def final(handlers: Handlers, prompt: str | None, **overrides) -> tuple:
    outputs = list(handlers.generate(prompt, **{**SETTINGS, **overrides}))
    return outputs[-1]


def test_examples_are_the_bundled_prompts():
    examples = list_examples()
    assert "bach_bwv66.6_chorale" in examples and all(p.suffix == ".mid" for p in examples.values())


def test_prompt_preview_gives_audio_roll_and_info(handlers):
    file, audio, roll, info, history_md, undo, redo, session = handlers.pick_example("bach_bwv66.6_chorale",
                                                                                    new_session())
    assert Path(file).parent.parent == handlers.config.files.root  # a copy, inside the app's folder
    assert Path(file).read_bytes() == BACH.read_bytes() and Path(file).name == "bach_bwv66.6_chorale.mid"
    assert Path(audio).name == "bach_bwv66.6_chorale.wav"  # the player's download: named after the piece
    rate, samples = _wav(audio)
    assert rate > 8000 and samples.dtype.name == "int16" and samples.shape[1] == 2 and samples.any()
    assert 'data-audio="prompt-audio"' in roll and "data:image/png;base64," in roll
    assert "bach_bwv66.6_chorale" in info and "84 notes" in info
    assert history.current(session)["data"] == BACH.read_bytes()
    assert not undo.interactive and not redo.interactive  # the first prompt: nothing to undo


def test_start_from_nothing(handlers):
    *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    file, audio, roll, info, *_, session = handlers.start_from_nothing(session)
    assert file is None and audio is None and "nothing" in info and "mm-empty" in roll
    assert all(v == gr.skip() for v in handlers.start_from_nothing(session))  # already nothing: as it is


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"RIFF....WAVEfmt ", "not a MIDI file"),
    (BACH.read_bytes()[:200], "truncated"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00", "no notes"),
], ids=["empty", "wav", "truncated", "no-notes"])
def test_a_refused_upload_keeps_the_previous_prompt(handlers, tmp_path, content, message):
    *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    bad = tmp_path / "upload.mid"
    bad.write_bytes(content)
    with pytest.warns(UserWarning, match=message) as caught:
        box, *rest = handlers.upload(str(bad), session)
    assert len(caught) == 1 and "upload.mid" in str(caught[0].message) and "\n" not in str(caught[0].message)
    assert box is None  # the upload box empties itself, ready for the next file
    assert all(r == gr.skip() for r in rest)  # the previous prompt, its history and players stay as they were
    with pytest.raises(gr.Error, match=message):  # an API caller sending it to /generate is told too
        final(handlers, str(bad))


def test_upload_over_the_size_limit(handlers):
    handlers.config.max_upload_bytes = 500
    with pytest.warns(UserWarning, match="larger than 500 bytes"):
        handlers.upload(str(BACH), new_session())


def test_a_good_upload_becomes_the_prompt_named_after_its_file(handlers, tmp_path):
    upload = tmp_path / "my song.mid"
    shutil.copyfile(BACH, upload)
    box, file, *_, info, history_md, undo, redo, session = handlers.upload(str(upload), new_session())
    assert box is None and "my song" in info and Path(file).read_bytes() == BACH.read_bytes()


def test_generate_returns_audio_roll_midi_and_the_seed(handlers):
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    status, seed, *rest = final(handlers, prompt, variations=2)
    audios, rolls, midis, records = rest[0:4], rest[4:8], rest[8:12], rest[12]
    assert seed == 7 and "seed 7" in status and "2 variation" in status
    assert [a is not None for a in audios] == [True, True, False, False]
    # issue 30 item 4: each audio download is named after the piece and variation, not 'audio.wav'
    assert [Path(a).name for a in audios[:2]] == [f"bach_bwv66.6_chorale-variation-{n}-excerpt.wav" for n in (1, 2)]
    assert Path(audios[0]).read_bytes()[:4] == b"RIFF" and Path(midis[1]).stem == "bach_bwv66.6_chorale-variation-2"
    assert 'data-audio="result-audio-1"' in rolls[0] and 'data-audio="result-audio-2"' in rolls[1]
    assert rolls[2:] == ["", ""] and "seed 8" in rolls[1]  # each variation names its own seed (7 + 1)
    score = load_midi(midis[0])
    assert score.note_num() >= 84  # the download is the whole piece: the prompt, then the continuation
    assert [r["seed"] for r in records] == [7, 8] and records[0]["boundary"] == load_midi(BACH).end()
    again = final(handlers, prompt, variations=2)
    assert Path(again[11]).read_bytes() == Path(midis[1]).read_bytes()  # same seed, same variation 2


def test_random_seed_reports_the_seed_used(handlers):
    status, seed, *_ = final(handlers, None, random_seed=True, seed=None)
    assert isinstance(seed, int) and 0 <= seed < 2**31 and f"seed {seed}" in status


def test_the_short_view_is_the_prompts_last_two_bars_then_the_continuation(handlers):
    from musicmha.app.views import window, window_start
    from musicmha.render.audio import music_end_seconds

    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    *_, records = final(handlers, prompt, unit="bars", length=2)
    score, boundary = load_midi(records[0]["midi"]), records[0]["boundary"]
    bar = 4 * score.ticks_per_quarter  # 4/4
    start = window_start(score, boundary)
    assert start == (boundary - 1) // bar * bar - bar  # the bar holding the prompt's end, and the one before
    short, whole = handlers.views(False, records), handlers.views(True, records)
    (rate, audio), roll = _wav(short[0]), short[4]
    shown_seconds = music_end_seconds(window(score, start))
    # audio and roll start at the same tick: the audio lasts the window's music plus the release tail, and
    # the roll's right edge is that music's end (plus its 2% margin)
    assert len(audio) / rate == pytest.approx(shown_seconds + 1.0, abs=0.01)
    end = float(re.search(r'data-end="([0-9.]+)"', roll).group(1))
    assert end == pytest.approx(shown_seconds * 1.02, rel=0.01)
    assert len(_wav(whole[0])[1]) > len(audio)  # the toggle shows the whole piece from its start
    assert [w is None for w in whole[1:4]] == [True] * 3


def test_bar_lines_follow_time_signature_changes():
    import symusic

    from musicmha.app.views import window_start
    from musicmha.data.midi_io import bar_starts

    score = symusic.Score(100)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    score.time_signatures.append(symusic.TimeSignature(600, 6, 8))
    assert bar_starts(score, 0, 1501) == [0, 300, 600, 900, 1200, 1500]
    assert window_start(score, 1000) == 600 and window_start(score, 900) == 300 and window_start(score, 100) == 0


def test_generation_streams_live_sketches_of_every_variation(handlers, monkeypatch):
    import musicmha.app.handlers as module

    # poll and stream as often as possible, so even a fast machine sees updates before the end
    monkeypatch.setattr(module, "STREAM_EVERY", 0.0)
    monkeypatch.setattr(module, "POLL_EVERY", 0.01)
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    outputs = list(handlers.generate(prompt, **{**SETTINGS, "length": 600, "variations": 2}))
    first, middle, last = outputs[0], outputs[1:-1], outputs[-1]
    assert first[0].startswith("Generating 2 variations") and first[2:6] == (None,) * 4  # old results cleared
    assert "waiting" in first[6] and "waiting" in first[7]
    for index in (0, 1):
        if last[14][index]["notes"]:  # a variation with new notes was sketched while it was made
            sketches = [o[6 + index] for o in middle if isinstance(o[6 + index], str)]
            assert sketches and "Live sketch" in sketches[-1]
            assert f'data-audio="result-audio-{index + 1}"' in sketches[-1]


def test_a_sketch_with_nothing_to_draw_yet_is_skipped(handlers):
    """A prompt whose last note lasts bars (a continuation that ended on a long note): its last 2 bars hold no
    onset, so an early sketch's short view is empty; it waits for notes instead of failing the run with 'no
    notes' (seen as a flaky test_history_names_undo_redo on a busy machine)."""
    from types import SimpleNamespace

    import symusic

    from musicmha.app.views import roll_size

    prompt = symusic.Score(480)
    prompt.tracks.append(symusic.Track("held", program=0))
    prompt.tracks[0].notes.extend([symusic.Note(0, 480, 60, 80), symusic.Note(480, 8 * 1920, 64, 80)])
    job = SimpleNamespace(sketches=lambda: [prompt.copy(), None])
    assert handlers._sketches(job, prompt, False, roll_size(2), 2) == [gr.skip()] * 4
    assert "Live sketch" in handlers._sketches(job, prompt, True, roll_size(2), 2)[0]  # the whole piece: drawn
    from musicmha.app.service import render_view  # a result without new notes there: the whole piece is shown

    view = render_view(prompt, "result-audio-1", boundary_tick=int(prompt.end()), full=False)
    assert view.start_tick == 0 and 'data-audio="result-audio-1"' in view.html


def test_stop_keeps_what_was_made(handlers, monkeypatch):
    slow_down_generation(monkeypatch, 0.01)
    *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    run = handlers.generate(handlers.show(session)[0],
                            **{**SETTINGS, "unit": "bars", "length": 32, "variations": 2}, session=session)
    assert next(run)[0].startswith("Generating")
    time.sleep(1.0)
    job = handlers._jobs["local"]
    handlers.stop(None)
    stopped = time.monotonic()
    assert job.done.wait(1.0)  # sampling ends within a second ...
    status, seed, *rest = list(run)[-1]
    assert time.monotonic() - stopped < 5.0  # ... and the partial results are rendered (2 busy CPUs here)
    assert status.startswith("Stopped after") and "2 partial variations kept" in status
    assert rest[0] is not None and rest[1] is not None and rest[8] and rest[9]  # playable and downloadable
    assert load_midi(rest[8]).note_num() > 84
    *_, session = handlers.continue_from(0, rest[12], session)  # ... and continuable
    assert history.name_of(history.current(session)) == "bach_bwv66.6_chorale + 1 continuation"


def test_history_names_undo_redo(handlers):
    *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    prompt = handlers.show(session)[0]
    records = final(handlers, prompt, session=session)[-1]
    *_, info, history_md, undo, redo, session = handlers.continue_from(0, records, session)
    assert "bach_bwv66.6_chorale + 1 continuation" in info and undo.interactive and not redo.interactive
    records = final(handlers, handlers.show(session)[0], session=session)[-1]
    *_, session = handlers.continue_from(0, records, session)
    assert history.name_of(history.current(session)) == "bach_bwv66.6_chorale + 2 continuations"
    assert "3. bach_bwv66.6_chorale + 2 continuations (variation 1, seed 7)" in history.markdown(session)
    assert history.markdown(session).startswith("History, oldest first")  # issue 30 item 4: it says which
    assert history.markdown(session).index("1. bach") < history.markdown(session).index("2. bach")

    file, *_, info, history_md, undo, redo, session = handlers.undo(session)
    assert "+ 1 continuation" in info and redo.interactive
    *_, session = handlers.undo(session)
    assert history.current(session)["data"] == BACH.read_bytes()
    assert all(r == gr.skip() for r in handlers.undo(session))  # undo stops at the first prompt
    *_, info, history_md, undo, redo, session = handlers.redo(session)
    assert "+ 1 continuation" in info
    *_, session = handlers.pick_example("essen_folksong_han1_1", session)  # a new prompt drops the redo steps
    assert not history.can_redo(session) and len(session["entries"]) == 4


def _legend(roll: str) -> dict[str, str]:
    """A roll's legend, label -> color, from its data-tracks attribute."""
    import html

    return dict(json.loads(html.unescape(re.search(r'data-tracks="([^"]*)"', roll).group(1))))


def test_each_track_has_one_color_in_every_roll_of_the_page(handlers, tmp_path):
    """Issue 30 item 2: a track's color came from its place among the tracks with notes in the picture, so a
    track silent in a result's short view moved every color after it. Now: the prompt's colors everywhere."""
    import symusic

    from musicmha.app.handlers import prompt_palette
    from musicmha.app.views import roll_html, window, window_start

    def track(name: str, program: int, bars: range) -> symusic.Track:
        t = symusic.Track(name, program=program)
        t.notes.extend(symusic.Note(bar * 1920 + beat * 480, 400, 60 + program % 12 + beat, 80)
                       for bar in bars for beat in range(4))
        return t

    prompt = symusic.Score(480)
    prompt.tempos.append(symusic.Tempo(0, 120))
    prompt.tracks.extend([track("Lead", 0, range(2)), track("Honky", 3, range(6)), track("", 0, range(6)),
                          track("  ", 0, range(6))])  # two unnamed pianos
    (tmp_path / "four tracks.mid").write_bytes(prompt.dumps_midi())
    _, file, _, roll, *_ = handlers.upload(str(tmp_path / "four tracks.mid"), new_session())
    colors = _legend(roll)
    assert list(colors) == ["Lead (0)", "Honky (3)", "Piano 1 (0)", "Piano 2 (0)"]  # told apart
    assert len(set(colors.values())) == 4
    loaded = load_midi(file)
    records = []
    for index, (program, bars) in enumerate(((48, range(6, 8)), (33, range(6, 9)))):
        result = loaded.copy()
        for t in result.tracks[1:]:  # the lead rests in the new bars, and in the short view
            t.notes.extend(track("", 0, range(6, 8)).notes)
        result.tracks.append(track("", program, bars))  # an instrument the continuation added
        path = tmp_path / f"variation-{index + 1}.mid"
        path.write_bytes(result.dumps_midi())
        records.append({"midi": str(path), "boundary": int(loaded.end()), "seed": index, "count": 2,
                        "palette": prompt_palette(loaded)})
    for full in (False, True):
        rolls = handlers.views(full, records)[4:6]
        for roll in rolls:
            shown = _legend(roll)
            assert "Lead (0)" in shown or not full  # silent in the short view: not in its legend
            assert {k: v for k, v in shown.items() if k in colors} == {k: colors[k] for k in shown if k in colors}
            new = [v for k, v in shown.items() if k not in colors]
            assert len(new) == 1 and new[0] not in colors.values()  # an added instrument: a color of its own
        assert "Honky (3)" in _legend(rolls[0]) and "Piano 2 (0)" in _legend(rolls[1])
    # a live sketch, drawn from the prompt's last bars, agrees too
    sketch = symusic.Score(records[0]["midi"])
    start = window_start(sketch, int(loaded.end()))
    from musicmha.render.pianoroll import track_keys
    drawn = _legend(roll_html(window(sketch, start), "result-audio-1", keys=track_keys(sketch),
                              palette=prompt_palette(loaded)))
    assert "Lead (0)" not in drawn and drawn["Honky (3)"] == colors["Honky (3)"]


@pytest.mark.parametrize("overrides, message", [
    ({"unit": "bars", "length": 33}, "between 1 and 32 bars"),
    ({"unit": "bars", "length": 2.5}, "length in bars must be a whole number, not 2.5"),  # not silently 2
    ({"length": 48.5}, "length in tokens must be a whole number"),
    ({"unit": "seconds", "length": 61}, "between 1 and 60 seconds"),
    ({"length": 4096}, "between 1 and 2048 tokens"),
    ({"variations": 5}, "variations"),
    ({"temperature": -0.5}, "temperature"),  # 0 is greedy, as in the CLI (tests/generation/test_options.py)
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": None}, "temperature"),
    ({"top_k": -3}, "top-k"),
    ({"top_k": 2.5}, "top-k"),
    ({"top_p": 1.5}, "top-p"),
    ({"top_p": 0}, "top-p"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**63}, "seed"),
    ({"seed": 7.5}, "seed"),
    ({"seed": None}, "seed"),
    ({"unit": "hours"}, "length unit"),
    ({"tempo": -5}, "tempo must be a positive number"),
    ({"programs": "x", "instruments_mode": CHOOSE}, "General MIDI program numbers"),
    ({"time_signature": "three"}, "like 3/4"),
    ({"instruments_mode": "all of them"}, "instruments must be one of"),
    ({"instruments_mode": CHOOSE, "programs": [200]}, "programs 0..127"),
    ({"instruments_mode": CHOOSE, "programs": [], "drums": False}, "at least one instrument"),
])
def test_settings_outside_the_limits(overrides, message):
    values = {**SETTINGS, **overrides}
    with pytest.raises(ConfigError, match=message):
        page_request(**values)


@pytest.mark.parametrize("prompt, overrides, message", [
    (None, {"tempo": 300}, "outside what this tokenizer can write"),
    (None, {"tempo": 5000}, "outside what this tokenizer can write"),
    (None, {"tempo": -5}, "tempo must be a positive number"),
    (None, {"time_signature": "5/16"}, "cannot be written by this tokenizer"),
    (BACH, {"tempo": 100}, "for starting from nothing"),
])
def test_controls_the_model_cannot_write_are_one_message_before_anything_changes(handlers, prompt, overrides,
                                                                                message):
    values = {**SETTINGS, "instruments_mode": None, "programs": None, "drums": True, "allow_early_end": False,
              "tempo": 0, "time_signature": None, **overrides}  # the page's order
    with pytest.raises(gr.Error, match=message):
        handlers.check(str(prompt) if prompt else None, **values)
    with pytest.raises(gr.Error, match=message):
        next(handlers.generate(str(prompt) if prompt else None, **values))  # before its first update


def test_settings_conversion():
    values = {**SETTINGS, "unit": "bars", "length": 4, "top_k": 20, "top_p": 0.9, "prompt_tokens": 128}
    assert page_request(**values) == GenerationRequest(bars=4, sampling=SamplingOptions(1.0, top_k=20, top_p=0.9,
                                                                                        seed=7), prompt_tokens=128)
    off = page_request(**{**values, "top_k": 0, "top_p": 1.0, "seed": 7.0, "random_seed": True})
    assert off.sampling == SamplingOptions(1.0) and off.sampling.seed is None  # a fresh seed, drawn later
    more = page_request(**{**values, "instruments_mode": CHOOSE, "programs": ["33: Electric Bass (finger)", 0],
                           "drums": False, "allow_early_end": True, "tempo": 90, "time_signature": "3/4"})
    assert more.instruments == (33, 0) and more.drums is False and more.allow_early_end is True
    assert more.tempo == 90.0 and more.time_signature == (3, 4)
    assert page_request(**{**values, "instruments_mode": NEW}).allow_new_instruments is True
    assert page_request(**{**values, "time_signature": "the model's choice"}).time_signature is None
    # regenerating bars: no length, and the same sampling, variations and instruments
    fill = page_request(**{name: values[name] for name in ("temperature", "top_k", "top_p", "seed", "random_seed",
                                                           "variations", "checkpoint")})
    assert fill == GenerationRequest(sampling=SamplingOptions(1.0, top_k=20, top_p=0.9, seed=7))
    assert fill.for_infill() is fill


def test_new_options_reach_the_model(handlers):
    status, *_, records = final(handlers, None, unit="bars", length=2, instruments_mode=CHOOSE, programs=[33],
                                drums=False, tempo=90, time_signature="3/4")
    score = load_midi(records[0]["midi"])
    assert {(t.program, t.is_drum) for t in score.tracks if t.note_num()} <= {(33, False)}
    assert score.time_signatures[0].numerator == 3 and abs(score.tempos[0].qpm - 90) < 5  # the nearest tempo token


def test_unknown_checkpoint_is_refused(handlers):
    with pytest.raises(gr.Error, match="unknown checkpoint"):
        final(handlers, None, checkpoint="/etc")


def test_no_checkpoint_at_all(handlers):
    handlers.config.checkpoint = None
    with pytest.raises(gr.Error, match="no checkpoint"):
        final(handlers, None)


def test_model_is_loaded_once(checkpoint):
    cache = ModelCache()
    assert cache.get(checkpoint) is cache.get(str(checkpoint) + "/")


def test_checkpoint_list_and_about(checkpoint, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a-not-a-model").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({"d_model": 64, "n_layers": 2}))
    (tmp_path / "b" / "training.json").write_text(json.dumps({"steps": 1200, "final_validation_nll": 1.234}))
    (tmp_path / "b" / "README.md").write_text("# Bach model\nTrained on chorales.\n")
    assert list_checkpoints(tmp_path) == [(tmp_path / "b").resolve()]
    assert list_checkpoints(tmp_path, extra=checkpoint)[0] == checkpoint.resolve()
    text = about_markdown(tmp_path / "b")
    for expected in ("d_model 64", "1,200 steps", "1.234", "#### Bach model", "musicmha corpus",
                     "musicmha prepare", "musicmha train", "musicmha generate"):
        assert expected in text
    assert "No checkpoint found" in about_markdown(None)
    summary = about_summary(tmp_path / "b")  # short, for a phone; the card is one click further
    assert "1,200 steps" in summary and "musicmha train" not in summary and len(summary.splitlines()) < 10


def test_a_checkpoint_in_checkpoints_is_the_default(checkpoint, tmp_path, monkeypatch):
    import musicmha.checkpoint
    from musicmha.app.service import initial_checkpoint

    monkeypatch.delenv("MUSICMHA_CHECKPOINT", raising=False)
    monkeypatch.setattr(musicmha.checkpoint, "CHECKPOINTS_DIR", tmp_path)
    assert initial_checkpoint(None) is None and list_checkpoints() == []  # the app still starts
    shutil.copytree(checkpoint, tmp_path / "shipped")
    assert initial_checkpoint(None) == (tmp_path / "shipped").resolve() == list_checkpoints()[0]
    assert initial_checkpoint(str(checkpoint)) == checkpoint.resolve()


def test_old_temporary_files_are_swept(tmp_path):
    files = TempFiles(tmp_path, max_age=10)
    old = files.path("old.mid")
    old.write_bytes(b"x")
    os.utime(old.parent, (time.time() - 100, time.time() - 100))
    new = files.path("new.mid")
    assert files.sweep(now=time.time() + 6) == 1
    assert not old.parent.exists() and new.parent.exists()


def test_build_app_exposes_generate(handlers):
    from musicmha.app import build_app

    app = build_app(handlers.config)
    assert isinstance(app, gr.Blocks)
    names = {d.api_name for d in app.fns.values() if d.api_visibility == "public"}
    assert {"generate", "preview", "regenerate"} <= names


def test_launch_options(checkpoint, monkeypatch):
    from musicmha.app import add_arguments
    from musicmha.app.server import prepare

    parser = add_arguments(argparse.ArgumentParser())
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    _, kwargs = prepare(parser.parse_args(["--checkpoint", str(checkpoint)]))
    assert (kwargs["server_name"], kwargs["server_port"], kwargs["share"]) == ("127.0.0.1", 7999, False)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    _, kwargs = prepare(parser.parse_args(["--checkpoint", str(checkpoint), "--host", "0.0.0.0",
                                           "--port", "8123", "--max-upload-mb", "1"]))
    assert (kwargs["server_name"], kwargs["server_port"], kwargs["max_file_size"]) == ("0.0.0.0", 8123, 2_000_000)


def test_cli_has_the_app_command():
    from musicmha.cli import build_parser

    args = build_parser().parse_args(["app", "--port", "7870"])
    assert args.command == "app" and args.port == 7870 and args.host is None


def test_fine_tuned_models_are_listed(checkpoint, tmp_path):
    """checkpoints/ first, then runs/*/model and --checkpoint-dir folders, newest first; each once."""
    root = tmp_path / "checkpoints"
    shutil.copytree(checkpoint, root / "shipped")
    shutil.copytree(checkpoint, tmp_path / "runs" / "mine" / "model")
    shutil.copytree(checkpoint, tmp_path / "elsewhere" / "tuned")
    (tmp_path / "runs" / "notes").mkdir()  # not a model
    found = list_checkpoints(root, search=[tmp_path / "elsewhere", tmp_path / "runs"])
    assert found[0] == (root / "shipped").resolve()
    assert set(found[1:]) == {(tmp_path / "runs" / "mine" / "model").resolve(), (tmp_path / "elsewhere" / "tuned").resolve()}
    assert len(found) == 3


# --- Regenerate these bars --------------------------------------------------------------------------------
FILL = dict(temperature=1.0, top_k=0, top_p=1.0, seed=7, random_seed=False, variations=2, checkpoint=None)


@pytest.fixture
def fill(handlers):
    from musicmha.app.regenerate import Regenerate

    return Regenerate(handlers)


def _notes(score) -> Counter:
    return Counter((t.program, t.is_drum, n.time, n.duration, n.pitch, n.velocity)
                   for t in score.tracks for n in t.notes)


def _range_left(roll: str) -> float:
    return float(re.search(r'class="mm-range" style="left:([0-9.]+)%', roll).group(1))


def test_bar_lines_ranges_and_the_window_around_a_range():
    import symusic

    from musicmha.app import bars

    score = symusic.Score(100)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    score.time_signatures.append(symusic.TimeSignature(600, 2, 4))  # 3/4 for two bars, then 2/4
    track = symusic.Track(notes=[symusic.Note(t, 50, 60, 80) for t in (0, 300, 650, 1250)])
    score.tracks.append(track)
    assert bars.bar_lines(score) == [0, 300, 600, 800, 1000, 1200, 1400]  # 6 bars: the last holds tick 1250
    assert bars.count_bars(score) == 6 and bars.span(score, 2, 3) == (300, 800)
    assert bars.default_range(6) == (5, 6) and bars.default_range(2) == (2, 2) and bars.default_range(1) == (1, 1)
    assert bars.focus(score, 3, 3) == (0, 1200) and bars.focus(score, 4, 4) == (300, None)  # None: to the end
    marks = bars.marks(score, 3, 4, start=300, stop=1400)
    assert marks.bars == ((2, 0), (3, 300), (4, 500), (5, 700), (6, 900)) and marks.span == (300, 700)
    assert marks.label == "bars 3-4" and bars.marks(score, 3, 3).label == "bar 3"
    assert bars.marks(score, 4, 7).span is None and bars.marks(score, 3, 2).span is None  # nothing shaded
    assert [bars.whole(v) for v in (3, 3.0, 2.5, None, float("nan"), "x", True)] == [3, 3, None, None, None,
                                                                                       None, None]


def test_the_bar_range_is_chosen_beside_the_prompt_and_drawn_on_its_roll(handlers, fill):
    prompt, *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    first, last, roll, chosen_for = fill.choose(prompt, session, None)  # a new prompt: its last two bars (of 5)
    assert (first, last, chosen_for) == (4, 5, prompt)
    assert 'data-audio="prompt-audio"' in roll and "bars 4-5" in roll and "Bars 4-5 of 5 chosen" in roll
    assert re.findall(r'class="mm-bar"[^>]*>(\d+)<', roll) == ["1", "2", "3", "4", "5"]  # bar numbers
    # The shading starts where bar 4 starts: 12 quarters in (4/4), at the chorale's constant tempo.
    score = load_midi(prompt)
    x0, x1, end = (float(v) for v in re.search(r'data-x0="([0-9.]+)" data-x1="([0-9.]+)" data-end="([0-9.]+)"',
                                                roll).groups())
    seconds = 12 * 60 / score.tempos[0].qpm
    assert _range_left(roll) == pytest.approx(100 * (x0 + (x1 - x0) * seconds / end), abs=0.15)
    moved = fill.mark(prompt, 2, 3)  # typed in: drawn at once, further left
    assert "bars 2-3" in moved and _range_left(moved) < _range_left(roll)
    assert "mm-range" not in fill.mark(prompt, 4, 9) and "Choose bars from 1 to 5" in fill.mark(prompt, 4, 9)
    assert "mm-range" not in fill.mark(prompt, None, 3)
    # the same prompt file again (a refused upload): the range typed meanwhile stays as it is
    assert all(v == gr.skip() for v in fill.choose(prompt, session, prompt))
    quartet, *_, session = handlers.pick_example("beethoven_op18no1_quartet", session)  # issue 30 item 3: a new
    assert fill.choose(quartet, session, prompt)[:2] == (7, 8)  # prompt gets its own last two bars (of 8)
    assert fill.choose(None, session, quartet)[:2] == (None, None)  # no prompt: no range (not the last one's)
    assert fill.mark(None, 2, 3) == gr.skip()


def test_a_new_prompt_clears_what_the_last_one_left_and_undo_brings_it_back(handlers, fill):
    """Issue 30 item 3: the bar range, the example menu and the results followed the last prompt."""
    def restore(prompt, session, before):  # (example, status, audios, rolls, midis, records, slots, buttons)
        example, status, *rest = handlers.restore(prompt, session, before)
        audios, rolls, midis, records = rest[0:4], rest[4:8], rest[8:12], rest[12]
        slots, buttons, shown_for = rest[13:17], rest[17:21], rest[21]
        assert shown_for == prompt and all(a.playback_position == 0 for a in audios)  # players at 0:00
        return example, status, [a.value is not None for a in audios], rolls, midis, records, \
            [s.visible for s in slots], [b.value for b in buttons]

    bach, *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    example, status, audios, rolls, midis, records, slots, _ = restore(bach, session, None)
    assert example == "bach_bwv66.6_chorale" and status == "" and records == [] and not any(audios)
    assert all(v == gr.skip() for v in handlers.restore(bach, session, bach))  # unchanged (a refused upload)
    made = final(handlers, bach, variations=2, session=session)[-1]
    kept = list(fill.regenerate(bach, 2, 3, **{**FILL, "variations": 1}, session=session))[-1][-1]
    quartet, *_, session = handlers.pick_example("beethoven_op18no1_quartet", session, made)
    example, status, audios, rolls, midis, records, slots, _ = restore(quartet, session, bach)
    assert example == "beethoven_op18no1_quartet" and status == "" and records == [] and not any(audios)
    assert rolls == [""] * 4 and midis == [None] * 4 and slots == [True, False, False, False]
    assert fill.choose(quartet, session, bach)[:2] == (7, 8)
    _, file, *_, session = handlers.upload(str(BACH), session, [])
    example, *_ = restore(file, session, quartet)
    assert example is None  # an upload is no example
    nothing, *_, session = handlers.start_from_nothing(session)
    assert restore(nothing, session, file)[0] is None and fill.choose(nothing, session, file)[:2] == (None, None)
    for _ in range(3):
        prompt, *_, session = handlers.undo(session)
    example, status, audios, rolls, midis, records, slots, buttons = restore(prompt, session, quartet)
    assert example == "bach_bwv66.6_chorale" and records == made  # undo brings the chorale's results back
    assert status.startswith("Earlier results of this prompt: 2 variations") and audios == [True, True, False, False]
    assert 'data-audio="result-audio-2"' in rolls[1] and midis[:2] == [r["midi"] for r in made]
    assert slots == [True, True, False, False] and buttons[:2] == ["Continue this one"] * 2
    # "Keep this one" keeps the range regenerated, on the kept prompt and on the one it came from
    *_, session = handlers.continue_from(0, kept, session)
    assert fill.choose(handlers.show(session)[0], session, bach)[:2] == (2, 3)
    prompt, *_, session = handlers.undo(session, kept)
    assert fill.choose(prompt, session, None)[:2] == (2, 3) and restore(prompt, session, None)[5] == kept


def test_regenerate_keeps_every_note_outside_the_range_and_keeps_history(handlers, fill):
    from musicmha.app.regenerate import button_labels

    prompt, *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    outputs = list(fill.regenerate(prompt, 2, 3, **FILL, session=session))
    assert outputs[0][0].startswith("Regenerating bars 2-3 (2 variations)")
    assert "regenerating bars 2-3" in outputs[0][6]  # the cards wait for their notes, old results cleared
    status, seed, *rest = outputs[-1]
    audios, rolls, midis, records = rest[0:4], rest[4:8], rest[8:12], rest[12]
    assert status.startswith("Done: 2 variation(s) of bars 2-3") and seed == 7
    assert [a is not None for a in audios] == [True, True, False, False]
    original = load_midi(BACH)
    start, end = 4 * original.ticks_per_quarter, 12 * original.ticks_per_quarter  # bars 2-3 of 4/4
    outside = {k: v for k, v in _notes(original).items() if not start <= k[2] < end}
    for index, record in enumerate(records):
        assert record["bars"] == [2, 3] and record["span"] == [start, end] and record["edits"] == ["2-3"]
        assert "bars 2-3" in rolls[index] and "regenerate with this seed" in rolls[index]
        stored = _notes(load_midi(midis[index]))  # the whole piece, as downloaded and as kept
        assert {k: v for k, v in stored.items() if not start <= k[2] < end} == outside
        assert all(time + duration <= end for _, _, time, duration, *_ in stored - _notes(original))
    assert [b.value for b in button_labels(records)][:2] == ["Keep this one"] * 2

    file, *_, info, history_md, undo, redo, session = handlers.continue_from(1, records, session)
    assert "bach_bwv66.6_chorale, bars 2-3 regenerated" in info and undo.interactive and not redo.interactive
    assert "(variation 2 kept, seed 8)" in info  # issue 30 item 4: which one was kept
    assert Path(file).read_bytes() == Path(midis[1]).read_bytes()
    assert "2. bach_bwv66.6_chorale, bars 2-3 regenerated" in history_md
    more = final(handlers, file, length=8, session=session)[-1]  # continuing it keeps the edit in its name
    assert more[0]["edits"] == ["2-3"] and [b.value for b in button_labels(more)][0] == "Continue this one"
    *_, info, _, _, _, session = handlers.continue_from(0, more, session)
    assert "bach_bwv66.6_chorale + 1 continuation, bars 2-3 regenerated" in info
    *_, session = handlers.undo(session)
    *_, info, _, undo, redo, session = handlers.undo(session)
    assert history.current(session)["data"] == BACH.read_bytes() and redo.interactive and not undo.interactive
    *_, info, _, _, _, session = handlers.redo(session)
    assert "bars 2-3 regenerated" in info and "continuation" not in info


def test_regenerating_a_short_range_shows_it_with_two_bars_either_side(handlers, fill):
    prompt, *_ = handlers.pick_example("beethoven_op18no1_quartet", new_session())  # 8 bars of 3/4
    *_, records = list(fill.regenerate(prompt, 4, 4, **{**FILL, "variations": 1}))[-1]
    short, whole = handlers.views(False, records), handlers.views(True, records)
    (_, audio), roll = _wav(short[0]), short[4]
    assert re.findall(r'class="mm-bar"[^>]*>(\d+)<', roll) == ["2", "3", "4", "5", "6"]  # bars 2-6 of 8
    assert "bar 4" in roll and len(_wav(whole[0])[1]) > len(audio)
    assert re.findall(r'class="mm-bar"[^>]*>(\d+)<', whole[4]) == [str(n) for n in range(1, 9)]


def test_regenerate_stops_like_generate(handlers, fill, monkeypatch):
    slow_down_generation(monkeypatch, 0.05)
    prompt, *_, session = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    run = fill.regenerate(prompt, 2, 2, **FILL, session=session)
    assert next(run)[0].startswith("Regenerating bar 2")
    time.sleep(0.5)
    handlers.stop(None)
    status, seed, *rest = list(run)[-1]
    assert status.startswith("Stopped after")
    done = re.search(r"bars done: ([\d, and]+) of (\d+)", status)  # "0 and 1 of 1)", "0 of 1 in each ..."
    assert done and done.group(2) == "1", status  # counted in the range's bars ...
    assert all(int(n) <= 1 for n in re.findall(r"\d+", done.group(1)))  # ... and never past it
    with_notes = sum(1 for r in rest[12] if r["notes"])  # kept: the variations with new notes
    assert with_notes and f"{with_notes} partial variation{'s' if with_notes > 1 else ''} kept" in status
    original = load_midi(BACH)
    bar = 4 * original.ticks_per_quarter
    kept = _notes(load_midi(rest[8]))
    assert {k: v for k, v in kept.items() if not bar <= k[2] < 2 * bar} == \
        {k: v for k, v in _notes(original).items() if not bar <= k[2] < 2 * bar}


@pytest.mark.parametrize("first, last, message", [
    (4, 9, "bars 4-9 are outside the piece: it has bars 1-5"),
    (0, 2, "outside the piece"),
    (3, 2, "the range is reversed"),
    (None, 2, "bars must be whole numbers"),
    (2.5, 3, "bars must be whole numbers"),
    (1, 5, "there is no music around bars 1-5"),
    (1, 4, "more than this model's context"),  # the tiny model's context is 256 tokens
], ids=["outside", "zero", "reversed", "empty", "fraction", "no-music-around", "too-long"])
def test_a_bad_range_is_one_message_and_changes_nothing(handlers, fill, first, last, message):
    prompt, session = str(BACH), history.push(new_session(), BACH.read_bytes(), "bach_bwv66.6_chorale")
    before = json.dumps(history.markdown(session)), [dict(e) for e in session["entries"]], session["index"]
    with pytest.raises(gr.Error, match=message) as caught:
        fill.check(prompt, first, last, **FILL)
    assert "\n" not in caught.value.message
    with pytest.raises(gr.Error, match=message):  # an API caller is told before the first update
        next(fill.regenerate(prompt, first, last, **FILL, session=session))
    assert (json.dumps(history.markdown(session)), session["entries"], session["index"]) == before
    assert handlers._jobs == {}  # no job started


def test_regenerate_needs_a_prompt_and_good_settings(handlers, fill):
    with pytest.raises(gr.Error, match="needs a prompt"):
        fill.check(None, 1, 2, **FILL)
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    with pytest.raises(gr.Error, match="temperature"):
        fill.check(prompt, 2, 3, **{**FILL, "temperature": -1})
    with pytest.raises(gr.Error, match="variations"):
        fill.check(prompt, 2, 3, **{**FILL, "variations": 9})


def test_a_model_without_fill_in_the_middle_says_so(tmp_path):
    from musicmha.app.regenerate import Regenerate

    small = (Path(__file__).resolve().parents[2] / "checkpoints" / "musicmha-small").resolve()
    fill = Regenerate(Handlers(AppConfig(checkpoints=[small], checkpoint=small, examples={},
                                         files=TempFiles(tmp_path), cache=_CACHE)))
    with pytest.raises(gr.Error, match="this model cannot fill bars in"):
        fill.check(str(BACH), 2, 3, **FILL)


def test_regenerate_follows_the_instrument_rules(handlers, fill):
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    *_, records = list(fill.regenerate(prompt, 2, 3, **{**FILL, "variations": 1, "instruments_mode": CHOOSE,
                                                         "programs": [33], "drums": False}))[-1]
    new = _notes(load_midi(records[0]["midi"])) - _notes(load_midi(BACH))
    assert {(program, drum) for program, drum, *_ in new} <= {(33, False)}


def test_history_names_regenerated_bars():
    session = history.push(new_session(), b"a", "song")
    session = history.push(session, b"b", "song", 0, ["3"])
    assert history.name_of(history.current(session)) == "song, bar 3 regenerated"
    session = history.push(session, b"c", "song", 2, ["3", "5-6"])
    assert history.name_of(history.current(session)) == "song + 2 continuations, bars 3, 5-6 regenerated"


def test_the_queue_never_runs_its_pandas_event_summary(checkpoint):
    """Gradio's queue summarises events with pandas in worker threads, which pandas 3 does not allow (two events
    ending together raised "dictionary changed size during iteration"): the app turns the summary off."""
    from musicmha.app.ui import build_app

    app = build_app(AppConfig(checkpoints=[checkpoint], checkpoint=checkpoint, examples={}))
    assert app._queue.ANAYLTICS_CACHE_FREQUENCY >= 10**9
