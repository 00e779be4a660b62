"""Writing rendered audio to disk: WAV with the standard library; FLAC/MP3 only through an installed
`ffmpeg` (or `sox` for FLAC), because a pip encoder would be a heavy dependency for a rarely used option."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from musicmha.errors import MusicmhaError

_ENCODE_TIMEOUT = 120.0  # seconds; encoders are fast, this only guards against a stuck process


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV file contents for int16 audio of shape (frames,) or (frames, channels)."""
    audio = np.asarray(audio)
    if audio.dtype != np.int16:
        raise MusicmhaError(f"audio must be int16 (got {audio.dtype})")
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2 or not 1 <= audio.shape[1] <= 8:
        raise MusicmhaError(f"audio must have shape (frames, channels), got {audio.shape}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(audio.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(np.ascontiguousarray(audio, dtype="<i2").tobytes())
    return buffer.getvalue()


def _encoder(suffix: str) -> list[str] | None:
    """Command reading WAV on stdin and writing `suffix` to the path appended later, or None."""
    if shutil.which("ffmpeg"):
        return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "wav", "-i", "pipe:0"]
    if suffix == ".flac" and shutil.which("sox"):
        return ["sox", "-t", "wav", "-"]
    return None


def check_audio_path(path: str | os.PathLike) -> Path:
    """Raise `MusicmhaError` unless `path` has a suffix we can write here (the encoder is installed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".wav", ".flac", ".mp3"):
        raise MusicmhaError(f"unsupported audio format {suffix or '(no suffix)'!r}: use .wav, .flac or .mp3")
    if suffix != ".wav" and _encoder(suffix) is None:
        needs = "ffmpeg or sox" if suffix == ".flac" else "ffmpeg"
        raise MusicmhaError(f"writing {suffix} needs the {needs} command (not installed); write .wav instead")
    return path


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write int16 audio to `path`; the format follows the suffix (.wav always; .flac/.mp3 need ffmpeg,
    or sox for .flac). Returns the path written."""
    path = check_audio_path(path)
    data = wav_bytes(audio, sample_rate)
    if path.suffix.lower() == ".wav":
        try:
            path.write_bytes(data)
        except OSError as error:
            raise MusicmhaError(f"cannot write {path}: {error.strerror or error}") from None
        return path
    command = _encoder(path.suffix.lower())
    assert command is not None  # check_audio_path made sure
    try:
        done = subprocess.run([*command, str(path)], input=data, capture_output=True, timeout=_ENCODE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise MusicmhaError(f"encoding {path.name} took longer than {_ENCODE_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise MusicmhaError(f"{command[0]} could not write {path}: {lines[-1] if lines else 'failed'}")
    return path
