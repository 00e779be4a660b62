"""Running Debian's `mma` (Musical MIDI Accompaniment): `.mma` text in, a Score out.

Songs are forked from a helper that imported mma once (musicmha/data/mma_server.py), about 3x faster than a
plain `mma` run per song and byte-identical to it; `USE_MMA_SERVER = False` runs the command itself. The
arrangements (musicmha/data/arrange.py) and the groove survey (musicmha/data/grooves.py) both render here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import symusic

from musicmha.data import mma_server
from musicmha.data.midi_io import load_midi
from musicmha.errors import MusicmhaError

MMA_TIMEOUT = 60.0
USE_MMA_SERVER = True  # fork songs from a helper that imported mma once (mma_server.py); False: plain runs


def require_mma() -> str:
    """Path of the `mma` command, or a one-line MusicmhaError saying how to install it."""
    exe = shutil.which("mma")
    if exe is None:
        raise MusicmhaError("the `mma` command (Musical MIDI Accompaniment) is missing: install it with "
                            "`apt-get install mma`")
    return exe


def run_mma(text: str, timeout: float = MMA_TIMEOUT) -> symusic.Score:
    """Render `.mma` text with the `mma` command into a Score (its own tick resolution)."""
    return run_mma_raw(text, timeout)[0]


def run_mma_raw(text: str, timeout: float = MMA_TIMEOUT) -> tuple[symusic.Score, str]:
    """`run_mma`, and what mma printed (its `Print` lines)."""
    exe = require_mma()
    with tempfile.TemporaryDirectory(prefix="musicmha-mma-") as tmp:
        src, out = Path(tmp) / "piece.mma", Path(tmp) / "piece.mid"
        src.write_text(text)
        argv = ["-xNOCREDIT", "-w", "-m", "5000", str(src), "-f", str(out)]
        log = Path(tmp) / "mma.log"
        try:
            code = mma_server.run(exe, argv, str(log), timeout) if USE_MMA_SERVER else None
            if code is None:  # no helper: a plain mma run
                env = {**os.environ, "PYTHONHASHSEED": "0"}
                done = subprocess.run([exe, *argv], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
                code, printed = done.returncode, done.stdout + done.stderr
            else:
                printed = log.read_text(errors="replace") if log.is_file() else ""
        except (subprocess.TimeoutExpired, TimeoutError):
            raise MusicmhaError(f"mma took longer than {timeout:g} s") from None
        if code != 0 or not out.is_file():
            errors = [ln.strip() for ln in printed.splitlines() if "rror" in ln]
            raise MusicmhaError(f"mma failed: {(errors or ['exit status %d' % code])[0][:200]}")
        return load_midi(out), printed
