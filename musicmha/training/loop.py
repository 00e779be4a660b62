"""The training loop as small functions over an explicit state (litgpt's fit / validate / save_checkpoint).

Everything that changes as a run goes lives in `TrainState`, which `progress.json` saves with each
checkpoint so that a resumed run continues exactly; everything fixed for the run (configuration, data,
the prepared model and optimizer) lives in `TrainRun`. Each function takes the two explicitly: no closure
reads a local that the loop changes underneath it.

Batches are a pure function of (seed, step, rank) (dataset.batch_for_step) and the learning rate a pure
function of the step, so nothing else needs saving besides accelerate's RNG and optimizer states.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from musicmha.atomic_files import fsync_tree
from musicmha.data.dataset import batch_for_step
from musicmha.errors import TrainingError
from musicmha.files import PROGRESS_FILE
from musicmha.nn.config import ModelConfig
from musicmha.training.config import TrainConfig
from musicmha.training.devices import check_finite, checked_step_loss, export_on_every_rank, to_device
from musicmha.training.batches import train_batch
from musicmha.training.export import export
from musicmha.training.run_folder import EXPORT_DIR, STATE_DIR, exported_step, state_folders, writing

logger = logging.getLogger(__name__)

VALIDATION_SEED_OFFSET = 1_000_003  # validation batches draw from their own stream, the same at every evaluation


@dataclass
class TrainState:
    """What changes from step to step. `progress()` is what a checkpoint saves; the timing fields are not
    saved (the tokens/s rate counts from where this process started)."""

    step: int = 0
    tokens_seen: int = 0
    train_loss: float = math.nan  # mean loss of the last optimizer step
    validation_nll: float = math.nan  # the last validation's (recomputed where an export needs a fresh one)
    best_validation_nll: float = math.inf  # early stopping: the best so far ...
    evaluations_without_improvement: int = 0  # ... and the evaluations since
    start_step: int = 0
    started: float = 0.0  # time.perf_counter() when this process reached start_step

    def progress(self) -> dict[str, Any]:
        return {"step": self.step, "tokens_seen": self.tokens_seen, "train_loss": self.train_loss,
                "best_validation_nll": None if math.isinf(self.best_validation_nll) else self.best_validation_nll,
                "evaluations_without_improvement": self.evaluations_without_improvement}

    @classmethod
    def from_progress(cls, progress: dict[str, Any]) -> TrainState:
        """The state a checkpoint's progress.json describes (older ones lack the early-stopping fields)."""
        return cls(step=progress["step"], tokens_seen=progress["tokens_seen"],
                   train_loss=progress.get("train_loss", math.nan),  # for an export still owed (maybe_export)
                   best_validation_nll=progress.get("best_validation_nll") or math.inf,
                   evaluations_without_improvement=progress.get("evaluations_without_improvement", 0))


@dataclass(frozen=True)
class TrainRun:
    """What stays fixed for the whole run."""

    cfg: TrainConfig
    accelerator: Any
    model: torch.nn.Module  # as accelerate prepared it (DDP- or FSDP-wrapped on several processes)
    forward: Callable[..., Any]  # the model, or its torch.compile
    optimizer: torch.optim.Optimizer
    model_config: ModelConfig
    tokenizer: Any
    train_split: Any
    val_split: Any
    fim: Any  # the tokenizer's fill-in-the-middle tokens, or None
    out: Path
    build: Callable[[], torch.nn.Module]  # an untrained model of the same module tree (FSDP exports)
    part_spec: Any = None  # the tokenizer's GrammarSpec where the run makes part rows

    @property
    def export_dir(self) -> Path:
        return self.out / EXPORT_DIR

    @property
    def tokens_per_step(self) -> int:
        cfg = self.cfg
        return cfg.batch_size * self.model_config.max_seq_len * cfg.grad_accum * self.accelerator.num_processes


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to the peak, then a cosine decay to min_lr_ratio * peak at decay_steps (max_steps)."""
    peak = cfg.learning_rate
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    span = max(1, (cfg.decay_steps or cfg.max_steps) - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return peak * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def fit(run: TrainRun, state: TrainState) -> None:
    """Optimizer steps from state.step to max_steps (or an early stop), validating, logging, checkpointing."""
    from tqdm.auto import tqdm

    cfg = run.cfg
    run.model.train()
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not run.accelerator.is_main_process,
               desc="train", unit="step", dynamic_ncols=True)
    state.started, state.start_step = time.perf_counter(), state.step
    try:  # the bar ends its line before an error is printed, so the error is a line of its own
        while state.step < cfg.max_steps:
            lr = learning_rate(state.step, cfg)
            loss = train_step(run, state.step, lr)
            state.step += 1
            state.tokens_seen += run.tokens_per_step
            state.train_loss = loss
            if state.step % cfg.eval_every == 0 or state.step == cfg.max_steps:
                record_validation(run, state)
            if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                log_progress(run, state, lr, bar)
            bar.update(1)
            stopping = bool(cfg.early_stop) and state.evaluations_without_improvement >= cfg.early_stop
            if state.step % cfg.save_every == 0 or state.step == cfg.max_steps or stopping:
                save_checkpoint(run, state)
                if not cfg.early_stop:
                    export_checkpoint(run, state)
            if stopping:
                logger.info("early stop at step %d: %d evaluations without a better validation NLL than %.4f "
                            "(model/ holds those weights)", state.step, state.evaluations_without_improvement,
                            state.best_validation_nll)
                break
    finally:
        bar.close()


def train_step(run: TrainRun, step: int, lr: float) -> float:
    """One optimizer step of grad_accum micro-steps at learning rate `lr`; its mean loss, checked finite on
    every process before the optimizer touches a weight."""
    cfg, accelerator = run.cfg, run.accelerator
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    # Micro-step losses stay on the device: the finite checks and the step's loss are read in one transfer
    # when the gradients are complete (a host sync per read stalls a GPU's queue).
    micro_losses: list[torch.Tensor] = []
    step_loss = None
    for micro in range(cfg.grad_accum):
        batch, weights = train_batch(run, step * cfg.grad_accum + micro)
        with accelerator.accumulate(run.model):
            micro_losses.append(_forward_backward(run, batch, weights))
            if accelerator.sync_gradients:
                step_loss = _clipped_step_loss(run, micro_losses, step)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
    if step_loss is None:  # accelerate did not mark a synchronizing micro-step (never expected)
        step_loss = checked_step_loss(accelerator, micro_losses, None, step, cfg.grad_accum)
    return step_loss


def _forward_backward(run: TrainRun, batch: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The micro-step's loss (detached, still on the device) after its backward pass; with target weights,
    the weighted mean (the copy weighting)."""
    try:
        with run.accelerator.autocast():
            extra = {"loss_weights": weights} if weights is not None else {}
            _, loss = run.forward(batch[:, :-1], batch[:, 1:], **extra)
        run.accelerator.backward(loss)
    except torch.OutOfMemoryError:
        cfg = run.cfg
        raise TrainingError(
            f"out of memory at batch size {cfg.batch_size} x {run.model_config.max_seq_len} tokens: "
            f"try --batch-size {max(1, cfg.batch_size // 2)} --grad-accum {cfg.grad_accum * 2}") from None
    return loss.detach()


def _clipped_step_loss(run: TrainRun, micro_losses: list[torch.Tensor], step: int) -> float:
    """Clip the complete gradients, then check them and the losses: a finite loss can still have non-finite
    gradients, and one optimizer step with them makes every weight NaN (fp16's gradient scaler skips such
    steps itself, so its norm is not checked)."""
    cfg, accelerator = run.cfg, run.accelerator
    norm = accelerator.clip_grad_norm_(run.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    return checked_step_loss(accelerator, micro_losses, norm if accelerator.scaler is None else None, step,
                             cfg.grad_accum)


def validate(run: TrainRun) -> float:
    """Mean NLL per token over eval_batches fixed validation batches, summed over every process."""
    cfg, accelerator = run.cfg, run.accelerator
    run.model.eval()
    total = torch.zeros(2, device=accelerator.device)
    with torch.no_grad():
        for i in range(cfg.eval_batches):
            batch = batch_for_step(run.val_split, seq_len=run.model_config.max_seq_len, batch_size=cfg.batch_size,
                                   seed=cfg.seed + VALIDATION_SEED_OFFSET, step=i, rank=accelerator.process_index,
                                   world_size=accelerator.num_processes)
            batch = to_device(batch, accelerator.device)
            with accelerator.autocast():
                _, loss = run.forward(batch[:, :-1], batch[:, 1:])
            total += torch.stack([loss.detach().float() * batch[:, 1:].numel(),
                                  torch.tensor(float(batch[:, 1:].numel()), device=total.device)])
    run.model.train()
    total = accelerator.reduce(total, reduction="sum")
    return (total[0] / total[1]).item()


def record_validation(run: TrainRun, state: TrainState) -> None:
    """Validate and log; with early stopping, export each new best (model/ always holds the best so far)."""
    state.validation_nll = validate(run)
    run.accelerator.log({"validation/nll": state.validation_nll,
                         "validation/perplexity": math.exp(state.validation_nll)}, step=state.step)
    if not run.cfg.early_stop:
        return
    if state.validation_nll < state.best_validation_nll:
        state.best_validation_nll, state.evaluations_without_improvement = state.validation_nll, 0
        export_model(run, state)
    else:
        state.evaluations_without_improvement += 1


def log_progress(run: TrainRun, state: TrainState, lr: float, bar) -> None:
    rate = (state.step - state.start_step) * run.tokens_per_step / max(1e-9, time.perf_counter() - state.started)
    bar.set_postfix(loss=f"{state.train_loss:.3f}", val=f"{state.validation_nll:.3f}", tok_s=f"{rate:,.0f}")
    run.accelerator.log({"train/loss": state.train_loss, "train/lr": lr, "train/tokens_per_s": rate},
                        step=state.step)


def save_checkpoint(run: TrainRun, state: TrainState) -> None:
    """state/step-N: accelerate's states plus progress.json. All processes write into one staging folder;
    the main process renames it when everyone is done, then drops all but the keep_last newest."""
    accelerator, out = run.accelerator, run.out
    # The last line of defence: never write NaN weights (a sum is non-finite when any term is; it also works
    # on the empty shards FSDP may hold).
    check_finite(accelerator, torch.stack([p.detach().float().sum() for p in run.model.parameters()]),
                 state.step - 1, "weights")
    final = out / STATE_DIR / f"step-{state.step:08d}"
    staging = out / STATE_DIR / f".step-{state.step:08d}.tmp"
    try:
        with writing(out / STATE_DIR, "a checkpoint"):
            if accelerator.is_main_process:
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
            accelerator.wait_for_everyone()
            accelerator.save_state(str(staging))
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                (staging / PROGRESS_FILE).write_text(json.dumps(state.progress()))
                fsync_tree(staging)  # the rename must not reach the disk before the files do
    except TrainingError:
        shutil.rmtree(staging, ignore_errors=True)  # half a checkpoint is no checkpoint
        raise
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for old in state_folders(out)[:-run.cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def export_checkpoint(run: TrainRun, state: TrainState) -> None:
    """Without early stopping, every checkpoint is also exported, so a run stopped early leaves a usable
    model folder; the export records the validation NLL of the weights it holds."""
    if state.step % run.cfg.eval_every and state.step != run.cfg.max_steps:
        state.validation_nll = validate(run)
    export_model(run, state)


def maybe_export(run: TrainRun, state: TrainState) -> None:
    """Export once more when the export is owed: a run killed after its last state folder was complete but
    before the export of it resumes with nothing left to train. Every process agrees (FSDP gathers)."""
    exported = exported_step(run.out)
    owed = state.step > 0 and (exported is None if run.cfg.early_stop else exported != state.step)
    flag = torch.tensor([float(owed)], device=run.accelerator.device)
    if run.accelerator.reduce(flag, reduction="sum").item() > 0:
        logger.info("exporting the model of step %d (the run stopped before its export was complete)", state.step)
        state.validation_nll = validate(run)
        export_model(run, state)


def export_model(run: TrainRun, state: TrainState) -> None:
    """model/ (and adapter/ for LoRA) from the current weights: gathered on every rank, written by the main one."""
    export_on_every_rank(run.accelerator, run.model, run.build, functools.partial(_write_export, run, state))


def _write_export(run: TrainRun, state: TrainState, plain: torch.nn.Module) -> None:
    with writing(run.export_dir, "the model"):
        export(plain, run.tokenizer, run.export_dir, cfg=run.cfg, step=state.step, tokens_seen=state.tokens_seen,
               train_loss=state.train_loss, validation_nll=state.validation_nll,
               num_processes=run.accelerator.num_processes)

