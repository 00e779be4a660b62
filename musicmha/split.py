"""Deterministic train/validation/test assignment by hashing a stable piece id.

The split of a piece depends only on its id (e.g. "bach/bwv66.6.mxl" or "essenFolksong/han1.abc#12",
or a MIDI file's path relative to the corpus folder), never on the corpus size, the order files are
found in or the number of workers: a piece stays in the same split when the corpus grows, so the
validation and test sets never leak into training across rebuilds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePath

SPLITS: tuple[str, ...] = ("train", "validation", "test")

# ~90/5/5: enough validation pieces for a stable loss on the built-in corpus (~13k pieces -> ~650).
VALIDATION_FRACTION = 0.05
TEST_FRACTION = 0.05


def split_score(key: str) -> float:
    """A number in [0, 1) derived from `key` alone (SHA-256, so it is stable across Python runs and
    platforms, unlike the built-in `hash`, which is salted per process)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(key: str, *, validation: float = VALIDATION_FRACTION, test: float = TEST_FRACTION) -> str:
    """The split ("train", "validation" or "test") that the piece with id `key` always lands in."""
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise ValueError(f"validation and test fractions must be in [0, 1) with a sum below 1, "
                         f"got {validation} and {test}")
    u = split_score(key)
    if u < 1.0 - validation - test:
        return "train"
    if u < 1.0 - test:
        return "validation"
    return "test"


def path_key(path: str | PurePath, root: str | PurePath) -> str:
    """The id of a file inside a corpus folder: its path relative to `root`, with forward slashes, so the
    same folder gives the same split on every OS and wherever the folder is moved."""
    return Path(path).relative_to(root).as_posix()
