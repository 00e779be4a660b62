"""Audio rendering: both synthesizers give non-silent stereo audio of the music's length; drums sound like
drums; long music is cut; bad input is a MidiError; the CLI writes a WAV."""

from __future__ import annotations

import logging
import wave

import numpy as np
import pytest
import symusic

from musicmha.render import audio as render, wav as audio_io
from musicmha.cli import main
from musicmha.errors import ConfigError, MidiError, MusicmhaError
from musicmha.render.audio import RELEASE_TAIL, render_audio
from musicmha.render.wav import write_audio

SR = 22050
HAVE_FLUIDSYNTH = render.fluidsynth_command() is not None and render.find_soundfont() is not None
SYNTHS = ["numpy", pytest.param("fluidsynth", marks=pytest.mark.skipif(
    not HAVE_FLUIDSYNTH, reason="the fluidsynth command is not installed (apt-get install fluidsynth)"))]


def make_score(notes: list[tuple[float, float, int]], *, program: int = 0, drum: bool = False) -> symusic.Score:
    """(start s, duration s, pitch) notes at 120 bpm, tpq 480, so one second is 960 ticks."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120))
    track = symusic.Track("drums" if drum else "piano", program=program, is_drum=drum)
    for start, duration, pitch in notes:
        track.notes.append(symusic.Note(int(start * 960), int(duration * 960), pitch, 100))
    score.tracks.append(track)
    return score


def rms(audio: np.ndarray, start: float, stop: float) -> float:
    part = audio[int(start * SR):int(stop * SR)].astype(np.float64)
    return float(np.sqrt((part ** 2).mean())) if part.size else 0.0


def centroid(audio: np.ndarray) -> float:
    """Spectral centroid in Hz: where the energy sits (hi-hats high, low notes low)."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64).mean(axis=1)))
    freqs = np.fft.rfftfreq(len(audio), 1.0 / SR)
    return float((spectrum * freqs).sum() / spectrum.sum())


@pytest.mark.parametrize("synth", SYNTHS)
def test_render_is_stereo_int16_of_the_music_length_and_not_silent(synth):
    score = make_score([(0.5, 0.5, 60), (1.0, 0.5, 64), (1.5, 0.5, 67)])  # ends at 2.0 s
    audio, rate = render_audio(score, sample_rate=SR, synthesizer=synth)
    assert rate == SR and audio.dtype == np.int16 and audio.ndim == 2 and audio.shape[1] == 2
    assert len(audio) == round((2.0 + RELEASE_TAIL) * SR)
    assert rms(audio, 0.0, 0.45) < 30  # nothing before the first note
    assert rms(audio, 0.6, 1.9) > 1000  # the notes sound
    assert np.abs(audio).max() > 20000  # normalized near full scale


@pytest.mark.parametrize("synth", SYNTHS)
def test_drums_sound_at_their_time_and_like_drums(synth):
    hat, _ = render_audio(make_score([(1.0, 0.25, 42)], drum=True), sample_rate=SR, synthesizer=synth)
    assert rms(hat, 0.0, 0.9) < 30 and rms(hat, 1.0, 1.2) > 500
    # Key 42 on channel 10 is a closed hi-hat; the same key on a piano is a low F#2 (92 Hz).
    low_note, _ = render_audio(make_score([(1.0, 0.25, 42)]), sample_rate=SR, synthesizer=synth)
    assert centroid(hat) > 3000 > centroid(low_note)


@pytest.mark.parametrize("synth", SYNTHS)
def test_music_longer_than_max_seconds_is_cut(synth, caplog):
    score = make_score([(float(t), 0.5, 60 + t % 12) for t in range(20)])  # 20 s of music
    with caplog.at_level(logging.WARNING, logger="musicmha.render.audio"):
        audio, _ = render_audio(score, sample_rate=SR, synthesizer=synth, max_seconds=3.0)
    assert len(audio) == round((3.0 + RELEASE_TAIL) * SR)
    assert "rendering only the first 3.0 s" in caplog.text
    assert rms(audio, 2.0, 2.5) > 1000  # the music up to the cut is there
    assert np.abs(audio[-10:]).max() < 50  # and the cut fades out instead of stopping dead


def test_numpy_notes_start_and_end_without_clicks():
    # An organ (program 19) holds a steady level, so its mid-note sample steps are the waveform's own.
    audio, _ = render_audio(make_score([(0.5, 0.5, 57)], program=19), sample_rate=SR, synthesizer="numpy")
    left = audio[:, 0].astype(int)
    assert np.abs(left[int(0.5 * SR):int(0.5 * SR) + 5]).max() < 2000  # ramps up, no jump to full scale
    assert np.abs(audio[-10:]).max() < 50  # released to silence by the end
    steps = np.abs(np.diff(left))
    steady = steps[int(0.7 * SR):int(0.9 * SR)].max()
    assert steps.max() <= 1.2 * steady  # onset and release add no step larger than the tone itself makes


TRUNCATED = b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x01\x00"  # track ends early


@pytest.mark.parametrize("bad", [b"", b"RIFF....WAVEfmt ", TRUNCATED])
def test_bad_midi_is_a_midi_error(bad):
    with pytest.raises(MidiError):
        render_audio(bad, synthesizer="numpy")


def test_score_without_notes_is_a_midi_error():
    with pytest.raises(MidiError, match="no notes"):
        render_audio(symusic.Score(480), synthesizer="numpy")


def test_bad_options_are_config_errors():
    score = make_score([(0.0, 0.5, 60)])
    for kwargs in ({"sample_rate": 100}, {"max_seconds": 0}, {"synthesizer": "organ"}):
        with pytest.raises(ConfigError):
            render_audio(score, **kwargs)


def test_soundfont_lookup_order(tmp_path, monkeypatch):
    mine, env, junk = tmp_path / "mine.sf2", tmp_path / "env.sf2", tmp_path / "junk.sf2"
    mine.write_bytes(b"RIFF\x04\x00\x00\x00sfbk")  # only the header is checked
    env.write_bytes(b"RIFF\x04\x00\x00\x00sfbk")
    junk.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    monkeypatch.setenv("MUSICMHA_SOUNDFONT", str(env))
    assert render.find_soundfont(mine) == mine
    assert render.find_soundfont() == env
    with pytest.raises(ConfigError, match="not a SoundFont"):
        render.find_soundfont(junk)  # fluidsynth would silently use its default SoundFont instead
    monkeypatch.setenv("MUSICMHA_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with pytest.raises(ConfigError, match="MUSICMHA_SOUNDFONT"):
        render.find_soundfont()
    monkeypatch.delenv("MUSICMHA_SOUNDFONT")
    found = render.find_soundfont()  # pretty_midi's bundled TimGM6mb.sf2 at worst
    assert found is not None and found.suffix in (".sf2", ".sf3") and found.is_file()


def test_auto_falls_back_to_numpy_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(render, "fluidsynth_command", lambda: None)
    monkeypatch.setattr(render, "_warned_fallback", False)
    score = make_score([(0.0, 0.5, 60)])
    with caplog.at_level(logging.WARNING, logger="musicmha.render.audio"):
        first, _ = render_audio(score, sample_rate=SR)
        render_audio(score, sample_rate=SR)
    assert caplog.text.count("built-in numpy synthesizer") == 1
    assert np.array_equal(first, render_audio(score, sample_rate=SR, synthesizer="numpy")[0])
    with pytest.raises(MusicmhaError, match="fluidsynth command is not installed"):
        render_audio(score, sample_rate=SR, synthesizer="fluidsynth")


def test_write_audio_wav_round_trip_and_refusals(tmp_path, monkeypatch):
    audio = (np.arange(200, dtype=np.int16).reshape(100, 2) * 3)
    path = write_audio(tmp_path / "a.wav", audio, 8000)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, 8000, 100)
        assert np.array_equal(np.frombuffer(w.readframes(100), "<i2").reshape(100, 2), audio)
    with pytest.raises(MusicmhaError, match="unsupported audio format"):
        write_audio(tmp_path / "a.ogg", audio, 8000)
    monkeypatch.setattr(audio_io.shutil, "which", lambda name: None)
    with pytest.raises(MusicmhaError, match="needs the ffmpeg command"):
        write_audio(tmp_path / "a.mp3", audio, 8000)


def test_cli_render_writes_a_wav(tmp_path, capsys):
    midi, out = tmp_path / "in.mid", tmp_path / "out.wav"
    make_score([(0.0, 1.0, 60), (1.0, 1.0, 67)]).dump_midi(midi)
    assert main(["render", str(midi), str(out), "--synth", "numpy", "--sample-rate", str(SR)]) == 0
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, SR)
        assert w.getnframes() == round((2.0 + RELEASE_TAIL) * SR)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.abs(frames).max() > 20000


def test_cli_render_bad_input_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"this is not a MIDI file")
    assert main(["render", str(bad), str(tmp_path / "out.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("musicmha render: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "out.wav").exists()
