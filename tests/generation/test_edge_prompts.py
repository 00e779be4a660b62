"""Prompts at the edges (drums only, one note, 16 tracks, 20 minutes, 1000 BPM, notes the tokenizer cannot
express) through `continue_midi` and the app's upload and generate handlers: each gives music or one line
saying why not. Also the regression tests of the bugs the MIDI fuzz found (tests/midi_fuzz.py)."""

from __future__ import annotations

import time

import pytest
import symusic
import torch
from app_helpers import make_tiny_checkpoint, wav_samples

from musicmha.errors import MidiError, MusicmhaError
from musicmha.generation.music_generator import MusicGenerator
from musicmha.data.midi_io import MAX_NOTES, MAX_QUARTERS, load_midi
from musicmha.render.audio import render_audio

gr = pytest.importorskip("gradio")
from musicmha.app import history  # noqa: E402
from musicmha.app.handlers import AppConfig, Handlers, new_session  # noqa: E402
from musicmha.app.service import ModelCache, TempFiles  # noqa: E402

TPQ = 480


def _score(tracks: list[tuple[int, bool, list[tuple[int, int, int]]]], qpm: float = 120.0) -> bytes:
    """MIDI bytes of (program, is_drum, [(start quarter, length in quarters, pitch)]) tracks."""
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, qpm))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    for program, drum, notes in tracks:
        track = symusic.Track(f"p{program}", program, drum)
        for start, length, pitch in notes:
            track.notes.append(symusic.Note(int(start * TPQ), max(1, int(length * TPQ)), pitch, 80))
        score.tracks.append(track)
    return score.dumps_midi()


def _melody(n: int, pitch: int = 60, step: float = 1.0) -> list[tuple[int, int, int]]:
    return [(i * step, step, pitch + i % 12) for i in range(n)]


PROMPTS = {
    "drums-only": _score([(0, True, [(i / 2, 0.25, (36, 38, 42)[i % 3]) for i in range(64)])]),
    "one-note": _score([(0, False, [(0, 1, 60)])]),
    "sixteen-tracks": _score([(p * 8, p == 9, _melody(16, 40 + 2 * p)) for p in range(16)]),
    "twenty-minutes": _score([(0, False, _melody(2400))], qpm=120.0),  # 2400 quarters at 120 BPM
    "1000-bpm": _score([(0, False, _melody(200, step=0.5))], qpm=1000.0),
    "notes-vanish": _score([(0, False, [(i, 1, p) for i, p in enumerate((5, 10, 120, 127))])]),  # outside 21..108
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("edge") / "tiny")


@pytest.fixture(scope="module")
def generator(checkpoint):
    torch.manual_seed(0)
    return MusicGenerator.from_pretrained(checkpoint, device="cpu")


@pytest.fixture
def handlers(checkpoint, tmp_path):
    return Handlers(AppConfig(checkpoints=[checkpoint], checkpoint=checkpoint, examples={}, cache=_CACHE,
                              files=TempFiles(tmp_path / "files")))


_CACHE = ModelCache()


def _one_line(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error)
    assert message.strip() and "\n" not in message, message
    return message


@pytest.mark.parametrize("name", list(PROMPTS))
def test_continue_midi_gives_music_or_one_line(generator, name):
    prompt = load_midi(PROMPTS[name])
    try:
        (result,) = generator.continue_midi(PROMPTS[name], max_new_tokens=48, seed=0)
    except MusicmhaError as error:
        assert name == "notes-vanish", _one_line(error)  # the only prompt that may be refused
        assert "pitch range" in _one_line(error)
        return
    assert name != "notes-vanish", "a prompt without expressible notes must be refused, not ignored"
    assert result.score.note_num() >= prompt.note_num() and result.boundary_tick == prompt.end()
    symusic.Score.from_midi(result.score.dumps_midi())  # the result is a valid file


@pytest.mark.parametrize("name", list(PROMPTS))
def test_app_previews_and_generates_or_says_why(handlers, tmp_path, name):
    path = tmp_path / f"{name}.mid"
    path.write_bytes(PROMPTS[name])
    data, _ = handlers.read_prompt(str(path))  # every edge prompt is accepted and previews
    _, audio, _, info, *_ = handlers.show(history.push(new_session(), data, name))
    assert wav_samples(audio).any() and f"{load_midi(path).note_num()} note" in info  # "1 note", "12 notes"
    try:
        status, *_ = list(handlers.generate(str(path), unit="tokens", length=32, seed=3, random_seed=False))[-1]
    except gr.Error as error:
        assert name == "notes-vanish" and "pitch range" in _one_line(error)
        return
    assert status.startswith("Done: 1 variation(s)")


def test_a_note_held_for_hours_renders_quickly():
    """Fuzz finding: the numpy synthesizer built a 4-hour note in full before cutting it to the preview, and
    FluidSynth rendered up to the last note-off (gigabytes of audio)."""
    held = _score([(0, False, [(0, 28_000, 60), (1, 1, 64)])], qpm=120.0)  # 28,000 quarters: ~4 hours
    for synth in ("numpy", "fluidsynth"):
        if synth == "fluidsynth" and not _have_fluidsynth():
            continue
        started = time.process_time()
        audio, rate = render_audio(held, sample_rate=16000, max_seconds=30.0, synthesizer=synth)
        assert len(audio) <= 32 * rate and time.process_time() - started < 5.0, synth


def _have_fluidsynth() -> bool:
    from musicmha.render.audio import find_soundfont, fluidsynth_command

    return fluidsynth_command() is not None and find_soundfont() is not None


@pytest.mark.parametrize("data, words", [
    (_score([(0, False, _melody(MAX_NOTES + 1, step=0.01))]), "too many notes"),
    (_score([(0, False, [(0, 1, 60), (MAX_QUARTERS + 10, 1, 60)])]), "too long"),
    (_score([(0, False, [(0, 1, 60)])] * 1025), "too many tracks"),
])
def test_caps_found_by_the_fuzz(data, words):
    with pytest.raises(MidiError, match=words):
        load_midi(data)
