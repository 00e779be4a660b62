"""`musicmha eval`: token-level NLL (nats/token), perplexity and bits per note of a checkpoint on a split.

Two ways to cut the pieces (each `BOS ... EOS` sequence of the split):
- "windows": consecutive windows of `window` predicted tokens; window k conditions on tokens of window k
  only (plus the one token before it), so every token but the first BOS of a piece is predicted once;
- "pieces": each piece in one forward pass (position schemes that extrapolate past max_seq_len only).
`nll_by_position` adds up the loss by position inside the window, for length-generalization curves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musicmha.errors import ConfigError
from musicmha.generation.copy_head import CopyHead
from musicmha.nn.positions import position_scheme_type
from musicmha.transfer import send

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    split: str
    mode: str
    window: int
    pieces: int
    tokens: int  # predicted tokens
    notes: int
    nll: float  # nats per token
    perplexity: float
    bits_per_note: float
    nll_by_position: list[float] | None = None  # mean NLL at each position of the window

    def to_dict(self) -> dict:
        return asdict(self)


def _chunks(piece: np.ndarray, mode: str, window: int) -> list[np.ndarray]:
    """Input+target slices of a piece: each slice predicts its tokens 1..end from the ones before."""
    if mode == "pieces":
        return [piece]
    return [piece[start:start + window + 1] for start in range(0, len(piece) - 1, window)]


def eval_device(name: str) -> torch.device:
    """`--device`: "auto" is the first GPU when torch sees one, else the CPU; a GPU that is not there is a
    one-line error rather than a CUDA traceback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {name}: torch sees no such CUDA device "
                          f"({torch.cuda.device_count()} available); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto")
    return device


def window_batches(data, n_pieces: int, mode: str, window: int, batch_size: int, pad_id: int,
                   on_piece: Callable[[np.ndarray], None] | None = None,
                   progress: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) rectangles (B, T) of the first n_pieces pieces of a TokenSplit cut by `_chunks`,
    padded at the end (pad_id inputs, -100 targets); on_piece sees each piece first."""
    from tqdm.auto import tqdm

    pending: list[np.ndarray] = []

    def rectangle() -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(c) for c in pending)
        inputs = torch.full((len(pending), width - 1), pad_id, dtype=torch.long)
        targets = torch.full((len(pending), width - 1), -100, dtype=torch.long)
        for row, chunk in enumerate(pending):
            chunk_t = torch.from_numpy(chunk.astype(np.int64))
            inputs[row, :len(chunk) - 1] = chunk_t[:-1]
            targets[row, :len(chunk) - 1] = chunk_t[1:]
        pending.clear()
        return inputs, targets

    for index in tqdm(range(n_pieces), desc=f"eval {data.split}", unit="piece", disable=not progress):
        piece = data.piece(index)
        if on_piece is not None:
            on_piece(piece)
        for chunk in _chunks(piece, mode, window):
            if len(chunk) >= 2:
                pending.append(chunk)
            if len(pending) == batch_size:
                yield rectangle()
    if pending:
        yield rectangle()


def log_probs(model, inputs: torch.Tensor, copy_head: CopyHead | None = None) -> torch.Tensor:
    """log p (B, T, V) of the model, or of the model mixed with its copy head, on the model's device."""
    device = next(model.parameters()).device
    inputs = send(inputs, device)
    logits, _ = model(inputs)
    if copy_head is None:
        return torch.log_softmax(logits.float(), dim=-1)
    return copy_head.mix_log_probs(logits, inputs)


@torch.no_grad()
def evaluate(model, tokenizer, data_dir: str | Path, *, split: str = "test", mode: str = "windows",
             window: int | None = None, batch_size: int = 8, max_pieces: int | None = None,
             progress: bool = True, copy_head: CopyHead | None = None) -> EvalResult:
    """Exact sums over the split (no sampling of windows); notes counted by decoding each piece. With a
    copy head, the mixture is scored (musicmha/generation/copy_head.py)."""
    from musicmha.data.dataset import TokenSplit
    from musicmha.data.midi_io import count_notes

    if mode not in ("windows", "pieces"):
        raise ConfigError(f"mode must be 'windows' or 'pieces', got {mode!r}")
    extrapolates = position_scheme_type(model.config.position).extrapolates
    if mode == "pieces" and not extrapolates:
        raise ConfigError(f"position={model.config.position!r} cannot read past max_seq_len: "
                          "evaluate with --mode windows")
    window = window or model.config.max_seq_len
    if mode == "windows" and window > model.config.max_seq_len and not extrapolates:
        raise ConfigError(f"window {window} is longer than max_seq_len={model.config.max_seq_len}")
    data = TokenSplit(data_dir, split)
    n_pieces = len(data) if max_pieces is None else min(max_pieces, len(data))
    model.eval()
    total_nll, total_tokens, total_notes = 0.0, 0, 0
    by_position = torch.zeros(window if mode == "windows" else 0, dtype=torch.float64)
    count_by_position = torch.zeros_like(by_position)

    def count(piece: np.ndarray) -> None:
        nonlocal total_notes
        total_notes += count_notes(tokenizer.decode(piece.tolist()))

    for inputs, targets in window_batches(data, n_pieces, mode, window, batch_size, tokenizer.pad_id, count,
                                          progress):
        logp = log_probs(model, inputs, copy_head)
        nll = F.nll_loss(logp.transpose(1, 2), targets.to(logp.device), ignore_index=-100,
                         reduction="none").double().cpu()  # (B, T); padding never enters the sums
        valid = targets != -100
        total_nll += nll[valid].sum().item()
        total_tokens += int(valid.sum())
        if mode == "windows":
            by_position[: nll.shape[1]] += (nll * valid).sum(0)
            count_by_position[: nll.shape[1]] += valid.sum(0)
    if total_tokens == 0:
        raise ConfigError(f"the {split} split of {data_dir} has no tokens to evaluate")
    nll = total_nll / total_tokens
    positions = None
    if mode == "windows":
        seen = count_by_position > 0
        positions = (by_position[seen] / count_by_position[seen]).tolist()
    bits_per_note = total_nll / math.log(2) / total_notes if total_notes else float("nan")
    return EvalResult(split, mode, window, n_pieces, total_tokens, total_notes, nll, math.exp(nll),
                      bits_per_note, positions)
