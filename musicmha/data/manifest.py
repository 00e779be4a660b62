"""A data folder's manifest.json: the one module that reads and writes it.

Two formats share the file name (musicmha.files.MANIFEST_FILE) and tell each other apart by their "kind":
- a corpus folder's (`musicmha corpus`, kind CORPUS_KIND): every converted piece with its path and split, and
  per collection its counts and failures; `prepare` takes the splits from it, so that an arrangement stays in
  its source piece's split;
- a prepared token folder's (`musicmha prepare`, kind TOKENS_KIND): the shards' sizes, the tokenizer and how
  the pieces were split and augmented; training and evaluation refuse a folder without one.

Both are written through atomic_files: a process killed while writing leaves the old manifest or the new
one, never half of one (a corpus build is an hour's work; a half-written token manifest is a folder that
no longer trains).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from musicmha.atomic_files import write_text_atomic
from musicmha.data.split import SPLITS
from musicmha.errors import MusicmhaError
from musicmha.files import MANIFEST_FILE

log = logging.getLogger(__name__)

CORPUS_KIND = "musicmha-corpus"
TOKENS_KIND = "musicmha-tokens"


def write_manifest(folder: str | Path, manifest: dict) -> None:
    """`folder/manifest.json`, atomically (either kind)."""
    write_text_atomic(Path(folder) / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")


def read_corpus_manifest(folder: str | Path) -> dict | None:
    """The corpus manifest of `folder`, or None when it has none: no file, another kind, or an unreadable
    one (logged: the corpus is then built, or the folder split, as if it had none)."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("ignoring unreadable %s", path)
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("kind") == CORPUS_KIND else None


def read_corpus_splits(folder: str | Path) -> dict[str, str] | None:
    """MIDI path relative to `folder` -> split, from a corpus manifest in `folder`, or None if there is none."""
    manifest = read_corpus_manifest(folder)
    if manifest is None:
        return None
    return {p["path"]: p["split"] for p in manifest.get("pieces", []) if p.get("split") in SPLITS}


def read_corpus_styles(folder: str | Path) -> dict[str, str]:
    """MIDI path relative to `folder` -> style (musicmha/data/styles.py) of each corpus piece that has one;
    empty for a folder that is not a corpus (a user's own MIDI has no style tokens)."""
    from musicmha.data.styles import style_of_piece

    manifest = read_corpus_manifest(folder) or {}
    styles = {p["path"]: style_of_piece(p) for p in manifest.get("pieces", []) if "path" in p}
    return {path: style for path, style in styles.items() if style}


def replace_collection(manifest: dict, name: str, stats: dict, pieces: list[dict]) -> None:
    """Put `name`'s stats and pieces into a corpus manifest in place of any earlier ones and recount the totals."""
    manifest["collections"][name] = stats
    manifest["pieces"] = sorted([p for p in manifest["pieces"] if p.get("collection") != name] + pieces,
                                key=lambda p: p["id"])
    manifest["pieces_total"] = len(manifest["pieces"])
    manifest["notes_total"] = sum(p["notes"] for p in manifest["pieces"])
    manifest["failures_total"] = sum(len(c["failures"]) for c in manifest["collections"].values())


def read_token_manifest(tokens_dir: str | Path) -> dict:
    """The manifest of a prepared token folder; MusicmhaError if the folder is not one."""
    folder = Path(tokens_dir)
    if not folder.is_dir():
        raise MusicmhaError(f"token folder not found: {folder}")
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise MusicmhaError(f"{folder} is not a prepared token folder (no {MANIFEST_FILE}; run `musicmha prepare`)") \
            from None
    except (OSError, ValueError) as error:
        raise MusicmhaError(f"unreadable {path}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != TOKENS_KIND:
        raise MusicmhaError(f"{path} is not a musicmha token manifest")
    return manifest
