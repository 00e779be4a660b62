"""MIDI to audio: FluidSynth with a General MIDI SoundFont when both are present, else the numpy fallback.

FluidSynth runs as the `fluidsynth` command (Debian package `fluidsynth`), not through pyfluidsynth: the
command plays every MIDI event itself (tempo, program changes, pedals, pitch bends), writes stereo, needs
no pip package, and a subprocess with a timeout cannot hang or crash the caller. It writes raw float32 so
loud passages keep their headroom; both routes are then peak-normalized and cut to the music's end plus a
short release tail, so the two synthesizers give audio of the same length and a similar level.

Nothing here downloads anything: SoundFonts are only looked up on disk (see `find_soundfont`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import symusic

from musicmha.errors import ConfigError, MusicmhaError
from musicmha.data.midi_io import load_midi
from musicmha.render.synth import synthesize

logger = logging.getLogger(__name__)

Synth = Literal["auto", "fluidsynth", "numpy"]
SOUNDFONT_ENV = "MUSICMHA_SOUNDFONT"
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/share/sounds/sf3")
# Better-sounding General MIDI banks first; any other .sf2/.sf3 in those folders comes after them.
_PREFERRED = ("default-GM.sf2", "FluidR3_GM.sf2", "default-GM.sf3", "MuseScore_General.sf3",
              "TimGM6mb.sf2")
RELEASE_TAIL = 1.0      # seconds kept after the last note ends: releases and reverb
_END_FADE = 0.05        # seconds of fade at the very end, so a cut reverb does not click
_PEAK = 0.89            # -1 dBFS
_warned_fallback = False


def is_soundfont(path: Path) -> bool:
    """True when `path` starts like a SoundFont 2/3 file (RIFF form 'sfbk'). Checked by us because
    fluidsynth, given a bad file, silently plays its default SoundFont instead."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"sfbk"


def find_soundfont(explicit: str | os.PathLike | None = None) -> Path | None:
    """The SoundFont to use: `explicit`, then $MUSICMHA_SOUNDFONT, then the system folders, then the
    TimGM6mb.sf2 that pretty_midi ships. An explicit path or variable naming a missing file is an error
    (the user asked for it); finding nothing at all returns None."""
    for given, origin in ((explicit, "--soundfont"), (os.environ.get(SOUNDFONT_ENV) or None, SOUNDFONT_ENV)):
        if given is not None:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigError(f"SoundFont not found ({origin}): {path}")
            if not is_soundfont(path):
                raise ConfigError(f"not a SoundFont (.sf2/.sf3) file ({origin}): {path}")
            return path
    for folder in map(Path, SOUNDFONT_DIRS):
        if not folder.is_dir():
            continue
        candidates = [folder / name for name in _PREFERRED] + sorted(
            p for p in folder.iterdir() if p.suffix.lower() in (".sf2", ".sf3"))
        for path in candidates:
            if path.is_file() and is_soundfont(path):  # also drops dangling alternatives symlinks
                return path
    try:
        import pretty_midi
    except ImportError:
        return None
    bundled = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return bundled if is_soundfont(bundled) else None


def fluidsynth_command() -> str | None:
    """Path of the `fluidsynth` executable, or None."""
    return shutil.which("fluidsynth")


def music_end_seconds(score: symusic.Score) -> float:
    """When the last note (or sustain pedal) is released, in seconds."""
    seconds = score.to("second") if score.ttype != symusic.core.Second else score
    end = 0.0
    for track in seconds.tracks:
        for events in (track.notes, track.pedals):
            if len(events):
                arrays = events.numpy()
                end = max(end, float((arrays["time"] + arrays["duration"]).max()))
    return end


def _cut(score: symusic.Score, seconds: float) -> symusic.Score:
    """The score up to `seconds`: what starts before is kept but released there. Only clipping starts is
    not enough: FluidSynth plays to the last note-off, and a corrupt file's note held for hours would
    become hours of raw audio (gigabytes) in the temporary folder."""
    cut = score.to("second").clip(0.0, seconds, clip_end=False)
    for track in cut.tracks:
        for events in (track.notes, track.pedals):
            for event in events:
                if event.time + event.duration > seconds:
                    event.duration = seconds - event.time
    return cut.to("tick")


def _render_fluidsynth(score: symusic.Score, sample_rate: int, soundfont: Path, seconds: float) -> np.ndarray:
    exe = fluidsynth_command()
    if exe is None:
        raise MusicmhaError("the fluidsynth command is not installed (Debian/Ubuntu: apt-get install fluidsynth)")
    with tempfile.TemporaryDirectory(prefix="musicmha-render-") as tmp:
        midi, raw = Path(tmp) / "in.mid", Path(tmp) / "out.raw"
        score.dump_midi(midi)
        cmd = [exe, "-ni", "-q", "-g", "0.5", "-r", str(sample_rate), "-T", "raw", "-O", "float",
               "-E", "little", "-F", str(raw), str(soundfont), str(midi)]
        # FluidSynth renders ~100x faster than real time here; the limit is generous yet finite.
        timeout = 30.0 + seconds
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise MusicmhaError(f"fluidsynth took longer than {timeout:.0f} s") from None
        if done.returncode != 0 or not raw.is_file():
            lines = (done.stderr or done.stdout or "").strip().splitlines()
            raise MusicmhaError(f"fluidsynth failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}")
        for line in (done.stderr or "").splitlines():
            if "error" in line.lower() or "warning" in line.lower():
                logger.warning("fluidsynth: %s", line.strip())
        return np.fromfile(raw, dtype="<f4").reshape(-1, 2)


def _resolve(synthesizer: Synth, soundfont: str | os.PathLike | None) -> tuple[str, Path | None]:
    if synthesizer not in ("auto", "fluidsynth", "numpy"):
        raise ConfigError(f"unknown synthesizer {synthesizer!r} (auto, fluidsynth or numpy)")
    if synthesizer == "numpy":
        return "numpy", None
    sf = find_soundfont(soundfont)
    if synthesizer == "fluidsynth":
        if sf is None:
            raise MusicmhaError("no SoundFont found: pass --soundfont, set MUSICMHA_SOUNDFONT or "
                                "apt-get install timgm6mb-soundfont")
        return "fluidsynth", sf
    if sf is not None and fluidsynth_command() is not None:
        return "fluidsynth", sf
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        missing = "the fluidsynth command" if sf is not None else "a SoundFont"
        logger.warning("rendering with the built-in numpy synthesizer (%s is missing); "
                       "install fluidsynth for realistic instruments", missing)
    return "numpy", None


def render_audio(score_or_path: symusic.Score | str | os.PathLike | bytes, *, sample_rate: int = 44100,
                 soundfont: str | os.PathLike | None = None, synthesizer: Synth = "auto",
                 max_seconds: float = 300.0) -> tuple[np.ndarray, int]:
    """Render MIDI to 16-bit stereo audio: returns (int16 array of shape (frames, 2), sample_rate).

    The audio lasts until the last note ends plus `RELEASE_TAIL` seconds. Music longer than `max_seconds`
    is cut there (logged). Bad MIDI raises `MidiError`; a missing tool or SoundFont requested explicitly
    raises `MusicmhaError`.
    """
    if not 8000 <= int(sample_rate) <= 96000:
        raise ConfigError(f"sample rate must be between 8000 and 96000 Hz, not {sample_rate}")
    if not max_seconds > 0:
        raise ConfigError(f"max_seconds must be positive, not {max_seconds}")
    sample_rate = int(sample_rate)
    score = load_midi(score_or_path)
    route, sf = _resolve(synthesizer, soundfont)
    end = music_end_seconds(score)
    cut = end > max_seconds
    if cut:
        logger.warning("music lasts %.1f s; rendering only the first %.1f s", end, max_seconds)
        score = _cut(score, float(max_seconds))
        end = float(max_seconds)
    n_frames = int(round((end + RELEASE_TAIL) * sample_rate))
    if route == "fluidsynth":
        assert sf is not None
        logger.debug("rendering %.1f s with fluidsynth and %s", end, sf)
        audio = _render_fluidsynth(score, sample_rate, sf, end)
        audio = np.pad(audio[:n_frames], ((0, max(0, n_frames - len(audio))), (0, 0)))
    else:
        audio = synthesize(score, n_frames, sample_rate)
    # A cut note keeps sounding until the end: fade over the whole tail then, else just the last moments.
    fade_len = min(n_frames, int((RELEASE_TAIL if cut else _END_FADE) * sample_rate))
    if fade_len:
        audio[-fade_len:] *= np.linspace(1.0, 0.0, fade_len, dtype=np.float32)[:, None]
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1e-6:
        audio = audio * (_PEAK / peak)
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16), sample_rate
