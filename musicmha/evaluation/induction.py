"""Can a model copy? Synthetic copy tasks, a plain training loop on them, and the repeat probe's rows (issue 26).

Two synthetic tasks, rows of uniformly random tokens in which some tokens are copies of earlier ones:

- "xx": a row is x;x, L random tokens twice; the copy targets are the whole second half. The copy sits at
  a fixed distance L, so a model that can attend by relative position solves it without matching content.
- "far": one segment of S tokens reappears at a distance drawn uniformly from [min_distance, max_distance]
  inside a row of random tokens; the targets are the copy's tokens after its first `skip` (the first ones
  cannot be known to be a copy). Only content matching finds the source: an induction mechanism.
  With `copies` > 1 several segments are copied per row, each at its own drawn distance; no copy is written
  over another copy or over any copy's source, so every copy is exact.

The repeat probe asks the same of real music: tokens [first bar line, + length) of a piece, heard twice
after BOS; a model that copies scores the second hearing far below the first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from musicmha.data.copy_targets import copy_weights
from musicmha.evaluation.evaluate import log_probs

logger = logging.getLogger(__name__)

TASKS = ("xx", "far")
TRAIN_ON = ("copy", "all", "weighted")  # which targets carry the training loss (train_copy)


@dataclass(frozen=True)
class CopyTask:
    """One synthetic copy task (see the module docstring); `length` is L for "xx", the row length for "far"."""

    kind: str
    vocab: int
    length: int
    segment: int = 32
    min_distance: int = 64
    max_distance: int = 1000
    skip: int = 4
    copies: int = 1  # far: segments copied per row

    def __post_init__(self) -> None:
        if self.kind not in TASKS:
            raise ValueError(f"task kind must be one of {', '.join(TASKS)}; got {self.kind!r}")
        if self.vocab < 2 or self.length < 1:
            raise ValueError(f"need vocab >= 2 and length >= 1, got {self.vocab} and {self.length}")
        if self.kind == "far":
            if not 0 <= self.skip < self.segment <= self.min_distance <= self.max_distance:
                raise ValueError("far task needs 0 <= skip < segment <= min_distance <= max_distance")
            if self.length < self.max_distance + self.segment:
                raise ValueError(f"far task rows of {self.length} tokens cannot hold a copy at distance "
                                 f"{self.max_distance} of {self.segment} tokens")
            if self.copies < 1 or 2 * self.copies * self.segment > self.length:
                raise ValueError(f"far task rows of {self.length} tokens cannot hold {self.copies} copies "
                                 f"(and their sources) of {self.segment} tokens")

    @property
    def row_length(self) -> int:
        """Tokens per row (the model reads one fewer: the last token is only a target)."""
        return 2 * self.length if self.kind == "xx" else self.length

    def rows(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (batch, row_length) long, mask (batch, row_length) bool): True at the scored copy tokens."""
        tokens = torch.randint(0, self.vocab, (batch, self.row_length), generator=generator)
        mask = torch.zeros(batch, self.row_length, dtype=torch.bool)
        if self.kind == "xx":
            tokens[:, self.length:] = tokens[:, :self.length]
            mask[:, self.length:] = True
            return tokens, mask
        if self.copies > 1:
            for b in range(batch):
                self._copy_several(tokens[b], mask[b], generator)
            return tokens, mask
        distance = torch.randint(self.min_distance, self.max_distance + 1, (batch,), generator=generator)
        # the source may start anywhere that leaves room for the copy after it
        room = self.row_length - self.segment - distance + 1
        source = (torch.rand(batch, generator=generator) * room).long()
        offsets = torch.arange(self.segment)
        rows = torch.arange(batch)[:, None]
        destination = (source + distance)[:, None] + offsets
        tokens[rows, destination] = tokens[rows, source[:, None] + offsets]
        mask[rows, destination[:, self.skip:]] = True
        return tokens, mask

    def _copy_several(self, row: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> None:
        """Copy `copies` segments inside one row (in place): each draws a distance and then a source as the
        single copy does, and is drawn again while its copy would overlap another copy or any source, or its
        source another copy (a whole row is redrawn after 100 failures)."""
        while True:
            placed: list[tuple[int, int]] = []  # (source, destination)
            for _ in range(self.copies):
                for _ in range(100):
                    distance = int(torch.randint(self.min_distance, self.max_distance + 1, (1,),
                                                 generator=generator))
                    room = self.row_length - self.segment - distance + 1
                    source = int(torch.rand(1, generator=generator) * room)
                    destination = source + distance
                    if all(abs(destination - d) >= self.segment and abs(destination - s) >= self.segment
                           and abs(source - d) >= self.segment for s, d in placed):
                        placed.append((source, destination))
                        break
                else:
                    break
            if len(placed) == self.copies:
                break
        for source, destination in placed:
            row[destination:destination + self.segment] = row[source:source + self.segment].clone()
            mask[destination + self.skip:destination + self.segment] = True


def copy_rows(kind: str, batch: int, vocab: int, length: int, *, generator: torch.Generator,
              **options: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`CopyTask(kind, vocab, length, **options).rows(batch, generator)`: rows and their copy-target mask."""
    return CopyTask(kind, vocab, length, **options).rows(batch, generator)


def masked_nll(model, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL (a tensor, with its graph) of the tokens where `mask` is True; the model reads
    tokens[:, :-1], so a mask on the first token is ignored (nothing predicts it)."""
    logits, _ = model(tokens[:, :-1])
    targets = tokens[:, 1:].masked_fill(~mask[:, 1:], -100)
    return F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100)


@torch.no_grad()
def split_losses(model, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(copy loss, other loss) from one eval-mode pass: mean NLL of the masked copy targets, and of every
    other target (tokens 1.. outside the mask: random tokens, ln(vocab) at best); the model's mode is kept."""
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(tokens[:, :-1])
        nll = F.cross_entropy(logits.float().transpose(1, 2), tokens[:, 1:], reduction="none")
        copy = mask[:, 1:]
        return float(nll[copy].mean()), float(nll[~copy].mean())
    finally:
        model.train(was_training)


@torch.no_grad()
def copy_loss(model, tokens: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean NLL (nats) of the masked copy tokens, in eval mode (no dropout); the model's mode is kept."""
    was_training = model.training
    model.eval()
    try:
        return float(masked_nll(model, tokens, mask))
    finally:
        model.train(was_training)


@dataclass
class CopyRun:
    """What `train_copy` measured: the held-out copy loss every `eval_every` steps, and the training speed."""

    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, copy loss)
    other_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, loss on the other targets)
    train_seconds: float = 0.0  # optimizer steps only, evaluations left out
    trained_tokens: int = 0  # tokens the model read while training

    @property
    def tokens_per_second(self) -> float:
        return self.trained_tokens / self.train_seconds if self.train_seconds else float("nan")

    def steps_to(self, threshold: float) -> int | None:
        """The first evaluated step whose copy loss is under `threshold`; None when none is."""
        return next((step for step, loss in self.curve if loss < threshold), None)


def train_copy(model, task: CopyTask, steps: int, *, batch: int = 64, lr: float = 1e-3, eval_every: int = 25,
               eval_rows: int = 256, seed: int = 0, train_on: str = "copy", stop_below: float | None = None,
               on_eval: Callable[[int, float], None] | None = None, warmup: CopyTask | None = None,
               warmup_steps: int = 0, copy_weight: float = 4.0, min_match: int = 4) -> CopyRun:
    """Train `model` on fresh rows of `task` with plain AdamW (no weight decay, no schedule) for `steps` steps.

    train_on: "copy" puts the loss on the copy targets only (random tokens teach nothing but the uniform
    distribution, and would dilute the copy signal), "all" on every token. The copy loss is measured on one
    fixed held-out batch of `eval_rows` rows at step 0, every `eval_every` steps and at the end; `on_eval(step,
    loss)` sees each, and training stops early once it is under `stop_below`. "weighted" is the music
    recipe's loss (musicmha/data/copy_targets.py): every token, with `copy_weight` on the targets whose
    `min_match` tokens before them occurred earlier in the row, found from the tokens alone as training on
    music finds them, not from the task's own mask. With `warmup`, the first
    `warmup_steps` of the `steps` train on its rows instead (rows of the same length: equal tokens); the
    copy loss is still measured on `task`.
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
    if warmup_steps and (warmup is None or warmup.row_length != task.row_length or warmup_steps < 0):
        raise ValueError("warmup_steps needs a warmup task whose rows are as long as the task's")
    device = next(model.parameters()).device
    held_out = [t.to(device) for t in task.rows(eval_rows, torch.Generator().manual_seed(seed + 1_000_003))]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    run = CopyRun()

    def evaluate(step: int) -> bool:
        loss, other = split_losses(model, *held_out)
        run.curve.append((step, loss))
        run.other_curve.append((step, other))
        logger.debug("step %d: copy loss %.4f", step, loss)
        if on_eval is not None:
            on_eval(step, loss)
        return stop_below is not None and loss < stop_below

    model.train()
    if evaluate(0):
        return run
    for step in range(1, steps + 1):
        source = warmup if step <= warmup_steps else task
        tokens, mask = (t.to(device) for t in source.rows(batch, generator))
        started = time.perf_counter()
        if train_on == "weighted":
            weights = copy_weights(tokens.cpu().numpy(), copy_weight, min_match)
            _, loss = model(tokens[:, :-1], tokens[:, 1:], loss_weights=torch.from_numpy(weights).to(device))
        else:
            loss = masked_nll(model, tokens, torch.ones_like(mask) if train_on == "all" else mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        run.train_seconds += time.perf_counter() - started
        run.trained_tokens += tokens[:, :-1].numel()
        if (step % eval_every == 0 or step == steps) and evaluate(step):
            break
    return run


def repeat_row(ids: list[int], bar_id: int, bos_id: int, length: int) -> list[int] | None:
    """BOS + x + x with x = ids[first bar line : + length] (whatever comes before the bar line, a BOS
    included, is left out: the passage starts on a bar as a repeated section would); None when the piece has no bar line or fewer than `length` tokens from its first one."""
    try:
        first = ids.index(bar_id)
    except ValueError:
        return None
    passage = list(ids[first:first + length])
    return [bos_id, *passage, *passage] if len(passage) == length else None


@torch.no_grad()
def repeat_nll(model, row: list[int], copy_head=None) -> tuple[float, float]:
    """Mean NLL per token of the first hearing and of the repeat of a `repeat_row` (the model alone, or mixed
    with its copy head): targets 1..L, then L+1..2L, each given everything before it in one causal pass."""
    length = (len(row) - 1) // 2
    tokens = torch.tensor([row])
    logp = log_probs(model, tokens[:, :-1], copy_head)[0].cpu()
    nll = -logp.gather(1, tokens[0, 1:, None])[:, 0]
    return float(nll[:length].mean()), float(nll[length:].mean())
