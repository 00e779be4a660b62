"""The "About" text of the app: the checkpoint's own description (config.json, training.json, README.md,
whichever exist), where the data comes from, and how to train a model of your own."""

from __future__ import annotations

from pathlib import Path

from musicmha.checkpoint import read_info
from musicmha.files import CARD_FILE, CONFIG_FILE, TRAINING_FILE

_README_LINES = 40  # a checkpoint README can be long; the panel shows its beginning

TRAIN_YOUR_OWN = """\
### Train your own
```bash
musicmha corpus --out data/corpus                 # music21's public-domain scores as MIDI
musicmha prepare data/corpus --out data/tokens    # tokenize into train/validation/test shards
musicmha train --data data/tokens --out runs/mine # CPU, one or more GPUs (accelerate launch -m musicmha train)
musicmha generate --checkpoint runs/mine/model --prompt data/prompts/bach_bwv66.6_chorale.mid --out out.mid
```
Put the exported folder under `checkpoints/` (or pass `--checkpoint`) and it appears in the checkpoint list.
"""

DATA = """\
### Data
The shipped model learns from the scores bundled with [music21](https://web.mit.edu/music21/) (Bach chorales,
Palestrina, Monteverdi, folk-song collections and more, public domain), converted to MIDI by `musicmha corpus`
and tokenized as REMI with programs (miditok). The example prompts are short openings of such pieces.
"""


def _model_lines(folder: Path) -> list[str]:
    config = read_info(folder, CONFIG_FILE)
    if config is None:
        return [f"{CONFIG_FILE} is missing or unreadable."]
    keys = ("d_model", "n_layers", "n_heads", "max_seq_len", "position", "vocab_size")
    shown = ", ".join(f"{k} {config[k]}" for k in keys if k in config)
    return [f"Causal transformer: {shown}."]


def _training_lines(folder: Path) -> list[str]:
    info = read_info(folder, TRAINING_FILE)
    if info is None:
        return []
    parts = [f"{info[k]:,} {label}" for k, label in (("steps", "steps"), ("tokens_seen", "tokens seen"))
             if isinstance(info.get(k), int)]
    nll = info.get("final_validation_nll")
    if isinstance(nll, (int, float)):
        parts.append(f"validation NLL {nll:.3f} nats/token")
    if info.get("preset"):
        parts.append(f"preset `{info['preset']}`")
    return [f"Training: {', '.join(parts)}."] if parts else []


def model_context(folder: Path | None) -> int | None:
    """The model's context in tokens (config.json's max_seq_len): how much of a prompt it can hear at once."""
    config = read_info(folder, CONFIG_FILE) if folder is not None else None
    value = config.get("max_seq_len") if isinstance(config, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def about_summary(folder: Path | None) -> str:
    """A few lines: which model, its size and training, where its music comes from (short enough for a
    phone screen; the full card is one click further)."""
    if folder is None:
        return "### Model\nNo checkpoint found: put one under `checkpoints/` or start the app with `--checkpoint`.\n"
    lines = [f"### Model: `{folder.name}`", *_model_lines(folder), *_training_lines(folder),
             "Learned from public-domain scores bundled with [music21](https://web.mit.edu/music21/)."]
    return "\n\n".join(lines) + "\n"


def model_card(folder: Path | None) -> str:
    """The checkpoint's README (its beginning), the data, and how to train a model of your own."""
    card = ""
    if folder is not None and (folder / CARD_FILE).is_file():
        text = (folder / CARD_FILE).read_text(errors="replace").splitlines()[:_README_LINES]
        # Demote the README's headings so they sit under ours.
        card = "\n".join("###" + line if line.startswith("#") else line for line in text) + "\n"
    return "\n".join([card, DATA, TRAIN_YOUR_OWN])


def about_markdown(folder: Path | None) -> str:
    """Markdown for the About panel for checkpoint `folder` (None: no checkpoint found): summary, then card."""
    return about_summary(folder) + "\n" + model_card(folder)
