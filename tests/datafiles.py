"""Shared helpers for the data-pipeline tests: real prompt files and generated corrupt MIDI fixtures."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import symusic

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = sorted((ROOT / "data" / "prompts").glob("*.mid"))

# file name -> a word the skip reason must contain
CORRUPT = {
    "truncated.mid": "truncated",
    "random.mid": "not a midi file",
    "empty.mid": "empty",
    "header_only.mid": "truncated",
    "zero_notes.mid": "no notes",
}


def zero_note_midi() -> bytes:
    """A well-formed MIDI file with a tempo, a time signature and an empty track."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.tracks.append(symusic.Track("empty", 0, False))
    return score.dumps_midi()


def write_corrupt_files(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    good = PROMPTS[0].read_bytes()
    (folder / "truncated.mid").write_bytes(good[: len(good) // 2])
    (folder / "random.mid").write_bytes(random.Random(0).randbytes(2000))
    (folder / "empty.mid").write_bytes(b"")
    (folder / "header_only.mid").write_bytes(good[:14])
    (folder / "zero_notes.mid").write_bytes(zero_note_midi())
    return dict(CORRUPT)


def copy_prompts(folder: Path, prompts: list[Path] | None = None) -> list[str]:
    """Copy prompt files into `folder`, some into a subfolder and one with an upper-case suffix, so the
    recursive, case-insensitive search is exercised. Returns the relative paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, src in enumerate(prompts if prompts is not None else PROMPTS):
        rel = Path("sub" if i % 2 else ".") / (src.stem + (".MID" if i == 1 else ".mid"))
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, folder / rel)
        written.append(rel.as_posix())
    return written
