"""Deterministic train/validation/test assignment by hashing a stable piece id.

The split of a piece depends only on its id (e.g. "bach/bwv66.6.mxl" or "essenFolksong/han1.abc#12",
or a MIDI file's path relative to the corpus folder), never on the corpus size, the order files are
found in or the number of workers: a piece stays in the same split when the corpus grows, so the
validation and test sets never leak into training across rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path, PurePath

from musicmha.files import SPLITS_FILE

log = logging.getLogger(__name__)

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


def assign_splits(keys: list[str], recorded: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Split of every key: the recorded one if any, else the hash rule. A small corpus whose hash rule leaves
    validation or test empty gets one piece moved there from train: among the pieces not yet recorded, the
    one with the highest hash score (a choice of the ids alone, never of file order). Returns the splits and
    the keys that were moved."""
    recorded = {k: v for k, v in (recorded or {}).items() if v in SPLITS}
    splits = {k: recorded.get(k) or split_of(k) for k in keys}
    moved = []
    for target in ("validation", "test"):
        if len(keys) < 3 or target in splits.values():
            continue
        movable = sorted((k for k in keys if splits[k] == "train" and k not in recorded), key=split_score)
        if len(movable) > 1 or (movable and list(splits.values()).count("train") > 1):
            splits[movable[-1]] = target
            moved.append(movable[-1])
    return splits, moved


def read_recorded_splits(folder: Path) -> dict[str, str]:
    """The split of each file recorded in `folder/SPLITS_FILE` ({} when none). A plain MIDI folder remembers
    its files' splits there (a corpus folder's manifest does the same), so that a piece stays in its split
    when files are added, even where a tiny corpus needed a piece moved."""
    path = Path(folder) / SPLITS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data["splits"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring unreadable %s (splits are assigned again)", path)
        return {}


def record_splits(folder: Path, splits: dict[str, str], recorded: dict[str, str]) -> None:
    """Add the new assignments to `folder/SPLITS_FILE`, keeping every recorded one (files that went away
    too: they keep their split if they come back). A read-only folder only gets a warning."""
    from musicmha.atomic_files import write_text_atomic

    merged = {**splits, **recorded}
    if merged == recorded:
        return
    text = json.dumps({"kind": "musicmha-splits", "version": 1,
                       "note": "the split of each file, kept when files are added; edit to move a piece",
                       "splits": dict(sorted(merged.items()))}, indent=1) + "\n"
    try:
        write_text_atomic(Path(folder) / SPLITS_FILE, text)
    except OSError as error:
        log.warning("cannot record the splits in %s (%s): adding files later may move pieces between splits",
                    folder, error.strerror or error)
