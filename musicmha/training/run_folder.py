"""The training run folder on disk: its state folders, what a killed run leaves behind, and write failures.

A run folder holds `train_config.json`, `state/step-N/` (accelerate save_state, written under a dot name and
renamed when complete) and `model/` (the inference export, written by `atomic_files.atomic_directory`). A
process killed at any moment leaves complete folders plus, at worst, staging folders with dot names: those
are swept here when a run (re)starts, and the newest complete state is the one to resume from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from musicmha.errors import TrainingError
from musicmha.files import TRAIN_CONFIG_FILE, TRAINING_FILE

logger = logging.getLogger(__name__)

STATE_DIR = "state"
EXPORT_DIR = "model"


def saved_config(out: Path) -> dict | None:
    """The settings the run folder was last run with (None: a new folder)."""
    path = out / TRAIN_CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def state_folders(out: Path) -> list[Path]:
    """Complete state folders, oldest first (staging folders start with a dot and are ignored)."""
    root = out / STATE_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def remove_stale(out: Path) -> None:
    """Sweep what a killed run left half-written: state and export staging folders. An export moved aside
    (`.model.old-PID`) while its replacement was being renamed in comes back when `model/` is missing."""
    export = out / EXPORT_DIR
    for old in sorted(out.glob(f".{EXPORT_DIR}.old-*")):
        if not export.exists():
            logger.info("restoring %s from %s, moved aside by a run that stopped mid-export", export, old)
            os.replace(old, export)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for stale in [*sorted((out / STATE_DIR).glob(".step-*.tmp")), *sorted(out.glob(f".{EXPORT_DIR}.*.tmp"))]:
        logger.info("removing %s, left by a run that stopped while writing it", stale)
        shutil.rmtree(stale, ignore_errors=True)


def exported_step(out: Path) -> int | None:
    """The step the export in `model/` holds, or None when there is no complete export."""
    try:
        return int(json.loads((out / EXPORT_DIR / TRAINING_FILE).read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cause(error: BaseException, folder: Path) -> str:
    """The operating system's reason, however the writer reported it: OSError, the text of safetensors'
    and torch's own errors ("I/O error: File too large (os error 27)", "strerror: Permission denied"), or,
    when torch only says "unexpected pos", a disk found full."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    found = re.search(r"I/O error: (.+?) \(os error \d+\)", text) or re.search(r"strerror: ([^\n]+)", text)
    if found:
        return found.group(1).strip()
    try:
        if shutil.disk_usage(folder if folder.exists() else folder.parent).free < 1 << 20:
            return "No space left on device"
    except OSError:
        pass
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


@contextmanager
def writing(folder: Path, what: str = "") -> Iterator[None]:
    """Turn a failed write (full disk, read-only folder, file size limit) into one line naming the folder
    and the cause, instead of a traceback from deep inside torch or safetensors. Only wraps code that does
    nothing but write, so a RuntimeError there (torch.save's way to fail) is a write failure."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as error:
        raise TrainingError(f"cannot write {what + ' in ' if what else ''}{folder}: {_cause(error, folder)} "
                            "(the previous checkpoint is kept)") from None
