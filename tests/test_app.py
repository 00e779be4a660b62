"""The web app in-process: handlers called as plain functions, with a tiny untrained checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from app_helpers import BACH, make_tiny_checkpoint  # noqa: E402

from musicmha.app.about import about_markdown  # noqa: E402
from musicmha.app.handlers import AppConfig, Handlers, generation_kwargs, new_session  # noqa: E402
from musicmha.app.service import ModelCache, TempFiles, list_checkpoints, list_examples  # noqa: E402
from musicmha.midi_io import load_midi  # noqa: E402

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


def final(handlers: Handlers, prompt: str | None, **overrides) -> tuple:
    outputs = list(handlers.generate(prompt, **{**SETTINGS, **overrides}))
    return outputs[-1]


def test_examples_are_the_bundled_prompts():
    examples = list_examples()
    assert "bach_bwv66.6_chorale" in examples and all(p.suffix == ".mid" for p in examples.values())


def test_prompt_preview_gives_audio_roll_and_info(handlers):
    path = handlers.pick_example("bach_bwv66.6_chorale")
    assert Path(path).parent.parent == handlers.config.files.root  # a copy, inside the app's folder
    audio, image, info, session = handlers.show_prompt(path, new_session())
    rate, samples = audio
    assert rate > 8000 and samples.dtype.name == "int16" and samples.shape[1] == 2 and samples.any()
    assert Path(image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "84 notes" in info
    assert session == {"current": BACH.read_bytes(), "history": [None]}


def test_empty_prompt_preview(handlers):
    audio, image, info, session = handlers.show_prompt(None, new_session())
    assert audio is None and image is None and "nothing" in info and session["history"] == []


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"RIFF....WAVEfmt ", "not a MIDI file"),
    (BACH.read_bytes()[:200], "truncated"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00", "no notes"),
], ids=["empty", "wav", "truncated", "no-notes"])
def test_bad_upload_is_a_one_line_error(handlers, tmp_path, content, message):
    bad = tmp_path / "upload.mid"
    bad.write_bytes(content)
    with pytest.raises(gr.Error, match=message) as error:
        handlers.show_prompt(str(bad), new_session())
    assert "\n" not in str(error.value.message) and "upload.mid" in error.value.message
    with pytest.raises(gr.Error, match=message):
        final(handlers, str(bad))


def test_upload_over_the_size_limit(handlers):
    handlers.config.max_upload_bytes = 500
    with pytest.raises(gr.Error, match="larger than 500 bytes"):
        handlers.show_prompt(str(BACH), new_session())


def test_generate_returns_audio_roll_midi_and_the_seed(handlers):
    prompt = handlers.pick_example("bach_bwv66.6_chorale")
    status, seed, *rest = final(handlers, prompt, variations=2)
    audios, rolls, midis = rest[0:4], rest[4:8], rest[8:12]
    assert seed == 7 and "seed 7" in status and "2 variation" in status
    assert [a is not None for a in audios] == [True, True, False, False]
    assert all(Path(r).is_file() for r in rolls[:2]) and rolls[2:] == [None, None]
    score = load_midi(midis[0])
    assert score.note_num() >= 84  # the prompt is kept whole, the continuation comes after it
    again = final(handlers, prompt, variations=2)
    assert Path(again[10]).read_bytes() == Path(midis[0]).read_bytes()  # same seed, same music


def test_random_seed_reports_the_seed_used(handlers):
    status, seed, *_ = final(handlers, None, random_seed=True, seed=None)
    assert isinstance(seed, int) and 0 <= seed < 2**31 and f"seed {seed}" in status


def test_generation_streams_a_live_piano_roll(handlers, monkeypatch):
    import musicmha.app.handlers as module

    # poll and stream as often as possible, so even a fast machine sees updates before the end
    monkeypatch.setattr(module, "STREAM_EVERY", 0.0)
    monkeypatch.setattr(module, "POLL_EVERY", 0.01)
    outputs = list(handlers.generate(None, **{**SETTINGS, "length": 600}))
    assert len(outputs) >= 2 and outputs[0][0].startswith("Generating")


def test_continue_and_undo_walk_the_history(handlers):
    prompt = handlers.pick_example("bach_bwv66.6_chorale")
    *_, session = handlers.show_prompt(prompt, new_session())
    result = final(handlers, prompt)[10]
    continued = handlers.continue_from(result)
    *_, session = handlers.show_prompt(continued, session)
    assert session["current"] == Path(result).read_bytes() and len(session["history"]) == 2

    back, session = handlers.undo(session)
    assert Path(back).read_bytes() == BACH.read_bytes()
    *_, session = handlers.show_prompt(back, session)  # the page previews the restored prompt
    assert len(session["history"]) == 1  # ... without recording the undo as a new step
    back, session = handlers.undo(session)
    assert back is None and session == new_session()
    with pytest.warns(UserWarning, match="Nothing to undo"):
        handlers.undo(session)


@pytest.mark.parametrize("overrides, message", [
    ({"unit": "bars", "length": 33}, "between 1 and 32 bars"),
    ({"unit": "seconds", "length": 61}, "between 1 and 60 seconds"),
    ({"length": 4096}, "between 1 and 2048 tokens"),
    ({"variations": 5}, "variations"),
    ({"temperature": 0}, "temperature"),
    ({"top_p": 1.5}, "top-p"),
    ({"seed": -1}, "seed"),
    ({"unit": "hours"}, "length unit"),
])
def test_settings_outside_the_limits(overrides, message):
    values = {**SETTINGS, **overrides}
    values.pop("checkpoint")
    with pytest.raises(gr.Error, match=message):
        generation_kwargs(**values)


def test_settings_conversion():
    values = {**SETTINGS, "unit": "bars", "length": 4, "top_k": 20, "top_p": 0.9, "prompt_tokens": 128}
    values.pop("checkpoint")
    assert generation_kwargs(**values) == dict(bars=4, temperature=1.0, top_k=20, top_p=0.9, seed=7,
                                               num_samples=1, prompt_tokens=128)


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


def test_a_checkpoint_in_checkpoints_is_the_default(checkpoint, tmp_path, monkeypatch):
    import musicmha.generator
    from musicmha.app.service import initial_checkpoint

    monkeypatch.delenv("MUSICMHA_CHECKPOINT", raising=False)
    monkeypatch.setattr(musicmha.generator, "CHECKPOINTS_DIR", tmp_path)
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
    assert {"generate", "preview"} <= names


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
