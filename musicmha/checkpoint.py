"""The inference checkpoint folder: what files it holds, where models are found, and loading or saving one.

A checkpoint is a folder with config.json + model.safetensors (MusicTransformer.save_pretrained) and
tokenizer.json (MusicTokenizer.save); one exported by training adds training.json (how it was trained), and
a shipped model a README.md (its model card). A LoRA run writes, beside its model, an adapter folder with
adapter.json + adapter.safetensors (musicmha.nn.lora). The names of these files are those of musicmha.files,
where every module takes them from (they are re-exported here, as they always were).

Models are found in the shipped `checkpoints/` (musicmha.assets: the repository's top-level folder, or the
copy a wheel install carries), in runs/ beside it, and in folders the user names; a shipped model can be
named by its folder name alone ("musicmha-small"). Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicmha import assets
from musicmha.errors import CheckpointError, ConfigError
from musicmha.files import (  # noqa: F401 (re-exported: checkpoint.CONFIG_FILE etc. name this folder's files)
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CARD_FILE,
    CONFIG_FILE,
    COPY_HEAD_FILE,
    TOKENIZER_FILE,
    TRAINING_FILE,
    WEIGHTS_FILE,
)

if TYPE_CHECKING:
    import torch

    from musicmha.data.tokenizer import MusicTokenizer
    from musicmha.nn.model import MusicTransformer

DEFAULT_MODEL = "musicmha-3"  # the shipped model the app and `generate` load when none is named
ENV_VAR = "MUSICMHA_CHECKPOINT"  # overrides the default: a folder, or a shipped model's name
CHECKPOINTS_DIR = assets.CHECKPOINTS_DIR  # read at call time, so tests can point it elsewhere
RUNS_DIR = "runs"  # trained and fine-tuned models, beside the shipped checkpoints/ folder


def is_checkpoint(folder: str | Path) -> bool:
    """A folder that claims to be a model (holds a config.json); loading still checks every file."""
    return (Path(folder) / CONFIG_FILE).is_file()


def shipped(root: Path | None = None) -> list[Path]:
    """The model folders of `root` (default: the shipped checkpoints/), sorted by name."""
    root = CHECKPOINTS_DIR if root is None else Path(root)
    return sorted(p for p in root.iterdir() if is_checkpoint(p)) if root.is_dir() else []


def list_checkpoints(root: Path | None = None, extra: Path | None = None,
                     search: list[Path] | None = None) -> list[Path]:
    """The models a user can pick: the folders of `root` (default: checkpoints/) that hold a config.json,
    sorted, then the fine-tuned and trained ones found in runs/ (beside checkpoints/) and the `search`
    folders (--checkpoint-dir): each folder itself, its sub-folders and their `model/` exports, newest
    first. `extra` (the one loaded) comes first when it is not among them."""
    root = CHECKPOINTS_DIR if root is None else Path(root)
    found = [p.resolve() for p in shipped(root)]
    trained = []
    for folder in [root.parent / RUNS_DIR, *(search or [])]:
        folder = Path(folder)
        candidates = [folder, *folder.glob("*"), *folder.glob("*/model")] if folder.is_dir() else []
        trained += [p.resolve() for p in candidates if is_checkpoint(p)]
    trained = sorted(set(trained) - set(found), key=lambda p: -(p / CONFIG_FILE).stat().st_mtime)
    found += trained
    if extra is not None and extra.resolve() not in found:
        found.insert(0, extra.resolve())
    return found


def _shipped_by_name(name: str) -> Path | None:
    """The shipped model called `name`, when `name` is a bare folder name (no path separator)."""
    if not name or Path(name).name != name or name in (".", ".."):
        return None
    folder = CHECKPOINTS_DIR / name
    return folder if is_checkpoint(folder) else None


def default() -> Path:
    """$MUSICMHA_CHECKPOINT (a folder or a shipped name), else the shipped DEFAULT_MODEL, else the first
    shipped model."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return Path(chosen) if Path(chosen).exists() else (_shipped_by_name(chosen) or Path(chosen))
    if is_checkpoint(CHECKPOINTS_DIR / DEFAULT_MODEL):
        return CHECKPOINTS_DIR / DEFAULT_MODEL
    found = shipped()
    if not found:
        raise CheckpointError(f"no checkpoint in {CHECKPOINTS_DIR}: train one (musicmha train) or pass --checkpoint")
    return found[0]


def resolve(name_or_path: str | os.PathLike | None = None) -> Path:
    """The checkpoint folder meant by a path, a shipped model's name ("musicmha-small"), or None (the
    default). An existing folder wins over a shipped model of the same name; whether its files are good is
    for `load` to say, naming the file."""
    if name_or_path is None:
        return default()
    path = Path(name_or_path)
    if path.is_dir():
        return path
    by_name = _shipped_by_name(os.fspath(name_or_path))
    if by_name is not None:
        return by_name
    names = ", ".join(p.name for p in shipped()) or "none"
    raise CheckpointError(f"{path}: checkpoint folder not found (nor a shipped model; shipped: {names})")


def load(name_or_path: str | os.PathLike | None = None, *, device: torch.device | str | None = None,
         dtype: torch.dtype | None = None) -> tuple[MusicTransformer, MusicTokenizer]:
    """The model and tokenizer of a checkpoint (see `resolve`), checked to belong together."""
    from musicmha.data.tokenizer import MusicTokenizer
    from musicmha.nn.model import MusicTransformer

    folder = resolve(name_or_path)
    model = MusicTransformer.from_pretrained(folder, device=device, dtype=dtype)
    tokenizer = MusicTokenizer.load(folder)
    if model.config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"{folder / TOKENIZER_FILE}: {tokenizer.vocab_size} tokens, but "
                              f"{folder / CONFIG_FILE} has vocab_size {model.config.vocab_size}: the "
                              f"tokenizer does not belong to this model")
    return model, tokenizer


def save(folder: str | Path, model: MusicTransformer, tokenizer: MusicTokenizer, *,
         training: dict[str, Any] | None = None) -> Path:
    """Write a whole checkpoint folder atomically (it appears complete or not at all, replacing any earlier
    one): model, tokenizer and, when given, training.json. The saved config names attention backend "auto":
    the backend a run used is how that machine ran fastest, not a property of the weights, so the model picks
    its own on the device that loads it."""
    from musicmha.atomic_files import atomic_directory

    folder = Path(folder)
    with atomic_directory(folder) as staging:
        model.save_pretrained(staging)
        if model.config.attention_backend != "auto":
            dataclasses.replace(model.config, attention_backend="auto").save(staging / CONFIG_FILE)
        tokenizer.save(staging)
        if training is not None:
            (staging / TRAINING_FILE).write_text(json.dumps(training, indent=2) + "\n")
    return folder


def read_info(folder: str | Path, name: str) -> dict[str, Any] | None:
    """A JSON file of a checkpoint (config.json, training.json) as a dict, or None when it is missing or
    unreadable: for describing a model, where a broken file must not stop the page (`load` reports it)."""
    try:
        value = json.loads((Path(folder) / name).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_copy_head(folder: str | Path) -> dict[str, Any] | None:
    """The saved fields of the copy head beside a checkpoint's weights (None when it has none); a file that
    is not a JSON object is a ConfigError naming it. musicmha.generation.copy_head.load_copy_head makes the
    head of them, paired with the checkpoint's tokenizer."""
    path = Path(folder) / COPY_HEAD_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ConfigError(f"{path} is not a valid copy head: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} is not a valid copy head: a JSON object of fields is expected, "
                          f"got {type(values).__name__}")
    return values


def write_copy_head(folder: str | Path, values: dict[str, Any]) -> Path:
    """Write a copy head's fields beside a checkpoint's weights, atomically."""
    from musicmha.atomic_files import write_text_atomic

    path = Path(folder) / COPY_HEAD_FILE
    write_text_atomic(path, json.dumps(values, indent=2) + "\n")
    return path
