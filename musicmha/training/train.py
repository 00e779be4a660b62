"""`musicmha train`: the accelerate training loop (CPU, one GPU, DDP/FSDP through `accelerate launch`).

Batches are a pure function of (seed, step, rank) (dataset.batch_for_step), the learning rate a pure
function of the step, and RNG/optimizer states come back through accelerate's save_state/load_state: so a
resumed run continues exactly where it stopped. Every checkpoint folder is written under a temporary name
and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from musicmha import checkpoint
from musicmha.atomic_files import atomic_directory, fsync_tree, write_text_atomic
from musicmha.errors import ConfigError
from musicmha.training.run_folder import (
    EXPORT_DIR,
    STATE_DIR,
    TrainingError,
    exported_step,
    remove_stale,
    state_folders,
    writing,
)
from musicmha.training.config import TrainConfig
from musicmha.training.devices import (
    checked_step_loss,
    configure_device,
    decay_split,
    export_on_every_rank,
    fused_optimizer,
    prepare_model_and_optimizer,
    to_device,
)

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_DIR", "STATE_DIR", "TrainResult", "TrainingError", "export", "learning_rate", "train"]
# Options that may change when resuming: they do not alter what the run computes.
# attention_backend: every backend computes the same function, so a run may move to a faster one (a GPU).
RESUMABLE_CHANGES = {"resume", "max_steps", "save_every", "eval_every", "eval_batches", "log_every",
                     "tensorboard", "keep_last", "compile", "data", "out", "early_stop", "attention_backend"}
ADAPTER_DIR = "adapter"  # a LoRA run's adapter alone, beside the merged model in model/


@dataclass
class TrainResult:
    steps: int
    tokens_seen: int
    final_train_loss: float
    final_validation_nll: float
    export_dir: Path
    is_main_process: bool = True  # False on the other ranks of a multi-process run


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to the peak, then a cosine decay to min_lr_ratio * peak at decay_steps (max_steps)."""
    peak = cfg.learning_rate
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    span = max(1, (cfg.decay_steps or cfg.max_steps) - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return peak * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, *, reference: torch.nn.Module | None = None,
               fused: bool | None = None) -> torch.optim.Optimizer:
    # No weight decay on norms, biases and embeddings tables of positions (nanoGPT: decay only matrices);
    # frozen weights are left out. `reference`: the bare model, when `model` is FSDP-wrapped.
    decay, no_decay = decay_split(model, reference)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused)


def _check_run_folder(cfg: TrainConfig, out: Path) -> Path | None:
    """The state folder to resume from (or None), after checking the run folder fits the request."""
    states = state_folders(out)
    saved_config = out / "train_config.json"
    if not cfg.resume:
        if states:
            raise ConfigError(f"{out} already holds checkpoints: pass --resume to continue it, "
                              "or choose another --out")
        return None
    if not states:
        logger.warning("--resume: no checkpoint in %s yet, starting from scratch", out)
        return None
    if saved_config.is_file():
        before = json.loads(saved_config.read_text())
        now = cfg.to_dict()
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and before.get(k) != now[k])
        if changed:
            raise ConfigError(f"--resume with different settings than the run in {out}: {', '.join(changed)}")
        if before.get("decay_steps") is None and before.get("max_steps") != cfg.max_steps:
            logger.warning("max_steps changed from %s to %s: the cosine schedule stretches from here on "
                           "(set decay_steps to plan a run in several parts)", before.get("max_steps"),
                           cfg.max_steps)
    return states[-1]


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or resume) a MusicTransformer on a prepared token folder; returns the final numbers."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from musicmha.data.dataset import TokenSplit, batch_for_step
    from musicmha.nn.model import MusicTransformer
    from musicmha.data.tokenizer import MusicTokenizer

    out = Path(cfg.out)
    train_split, val_split = TokenSplit(cfg.data, "train"), TokenSplit(cfg.data, "validation")
    tokenizer = MusicTokenizer.load(Path(cfg.data))
    model_config = cfg.model_config(tokenizer.vocab_size)
    fim = tokenizer.fim_tokens
    if cfg.fim_rate and fim is None:
        raise ConfigError(f"--fim-rate {cfg.fim_rate}: the tokenizer of {cfg.data} has no fill-in-the-middle "
                          "tokens; prepare the data again with this version of musicmha")
    resume_from = _check_run_folder(cfg, out)

    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              log_with="tensorboard" if cfg.tensorboard else None, project_dir=str(out))
    device = accelerator.device
    if model_config.attention_backend == "flex" and device.type != "cuda":
        raise ConfigError(f"attention_backend flex trains on CUDA only (FlexAttention has no backward on "
                          f"{device.type}): use blocked or sdpa here")
    configure_device(device)
    set_seed(cfg.seed)  # identical initial weights in every process
    model = _initial_model(cfg, model_config, tokenizer)
    bare, fused = model, fused_optimizer(device)
    if fused:
        model.to(device)  # fused AdamW wants its parameters on the GPU when it is built
    model, optimizer = prepare_model_and_optimizer(
        accelerator, model, lambda m: _optimizer(m, cfg, reference=bare, fused=fused))
    forward = torch.compile(model) if cfg.compile else model
    rank, world = accelerator.process_index, accelerator.num_processes

    step, tokens_seen, last_loss = 0, 0, float("nan")
    best_nll, stale_evals = math.inf, 0  # early stopping: the best validation NLL and evaluations since
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        progress = json.loads((resume_from / "progress.json").read_text())
        step, tokens_seen = progress["step"], progress["tokens_seen"]
        last_loss = progress.get("train_loss", last_loss)  # for an export still owed (see below)
        best_nll = progress.get("best_validation_nll") or math.inf
        stale_evals = progress.get("evaluations_without_improvement", 0)
        logger.info("resumed from %s at step %d", resume_from, step)
    if accelerator.is_main_process:
        with writing(out):  # a read-only or full run folder fails here, before any work
            out.mkdir(parents=True, exist_ok=True)
            remove_stale(out)
            write_text_atomic(out / "train_config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    if cfg.tensorboard:
        accelerator.init_trackers("musicmha", config={k: v for k, v in cfg.to_dict().items()
                                                      if isinstance(v, (int, float, str, bool))})

    def validation_nll() -> float:
        model.eval()
        total = torch.zeros(2, device=accelerator.device)
        with torch.no_grad():
            for i in range(cfg.eval_batches):
                batch = batch_for_step(val_split, seq_len=model_config.max_seq_len, batch_size=cfg.batch_size,
                                       seed=cfg.seed + 1_000_003, step=i, rank=rank, world_size=world)
                batch = to_device(batch, device)
                with accelerator.autocast():
                    _, loss = forward(batch[:, :-1], batch[:, 1:])
                total += torch.stack([loss.detach().float() * batch[:, 1:].numel(),
                                      torch.tensor(float(batch[:, 1:].numel()), device=total.device)])
        model.train()
        total = accelerator.reduce(total, reduction="sum")
        return (total[0] / total[1]).item()

    def save_state() -> None:
        # All processes write into one staging folder; the main process renames it when everyone is done.
        # The last line of defence: never write NaN weights (a sum is non-finite when any term is; it also
        # works on the empty shards FSDP may hold).
        _check_finite(accelerator, torch.stack([p.detach().float().sum() for p in model.parameters()]),
                      step - 1, "weights")
        final = out / STATE_DIR / f"step-{step:08d}"
        staging = out / STATE_DIR / f".step-{step:08d}.tmp"
        try:
            with writing(out / STATE_DIR, "a checkpoint"):
                if accelerator.is_main_process:
                    shutil.rmtree(staging, ignore_errors=True)
                    staging.mkdir(parents=True)
                accelerator.wait_for_everyone()
                accelerator.save_state(str(staging))
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    (staging / "progress.json").write_text(
                        json.dumps({"step": step, "tokens_seen": tokens_seen, "train_loss": last_loss,
                                    "best_validation_nll": None if math.isinf(best_nll) else best_nll,
                                    "evaluations_without_improvement": stale_evals}))
                    fsync_tree(staging)  # the rename must not reach the disk before the files do
        except TrainingError:
            shutil.rmtree(staging, ignore_errors=True)  # half a checkpoint is no checkpoint
            raise
        if accelerator.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            for old in state_folders(out)[:-cfg.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def export_model() -> None:
        def write(plain: torch.nn.Module) -> None:
            with writing(export_dir, "the model"):
                export(plain, tokenizer, export_dir, cfg=cfg, step=step, tokens_seen=tokens_seen,
                       train_loss=last_loss, validation_nll=val_nll, num_processes=world)

        export_on_every_rank(accelerator, model, lambda: _initial_model(cfg, model_config, tokenizer), write)

    export_dir = out / EXPORT_DIR
    model.train()
    tokens_per_step = cfg.batch_size * model_config.max_seq_len * cfg.grad_accum * world
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not accelerator.is_main_process,
               desc="train", unit="step", dynamic_ncols=True)
    val_nll, started, start_step = float("nan"), time.perf_counter(), step
    try:  # the bar ends its line before an error is printed, so the error is a line of its own
        while step < cfg.max_steps:
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Micro-step losses stay on the device: the finite checks and the step's loss are read in one
            # transfer when the gradients are complete (a host sync per read stalls a GPU's queue).
            micro_losses: list[torch.Tensor] = []
            step_loss = None
            for micro in range(cfg.grad_accum):
                batch = batch_for_step(train_split, seq_len=model_config.max_seq_len, batch_size=cfg.batch_size,
                                       seed=cfg.seed, step=step * cfg.grad_accum + micro, rank=rank,
                                       world_size=world, fim=fim, fim_rate=cfg.fim_rate)
                batch = to_device(batch, device)
                with accelerator.accumulate(model):
                    try:
                        with accelerator.autocast():
                            _, loss = forward(batch[:, :-1], batch[:, 1:])
                        micro_losses.append(loss.detach())
                        accelerator.backward(loss)
                    except torch.OutOfMemoryError:
                        raise TrainingError(
                            f"out of memory at batch size {cfg.batch_size} x {model_config.max_seq_len} tokens: "
                            f"try --batch-size {max(1, cfg.batch_size // 2)} --grad-accum {cfg.grad_accum * 2}"
                        ) from None
                    if accelerator.sync_gradients:
                        # A finite loss can still have non-finite gradients; one optimizer step with them makes
                        # every weight NaN. (fp16's gradient scaler skips such steps itself.)
                        norm = accelerator.clip_grad_norm_(model.parameters(),
                                                           cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                        step_loss = checked_step_loss(accelerator, micro_losses,
                                                      norm if accelerator.scaler is None else None, step,
                                                      cfg.grad_accum, TrainingError)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            if step_loss is None:  # accelerate did not mark a synchronizing micro-step (never expected)
                step_loss = checked_step_loss(accelerator, micro_losses, None, step, cfg.grad_accum, TrainingError)
            step += 1
            tokens_seen += tokens_per_step
            last_loss = step_loss
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                val_nll = validation_nll()
                accelerator.log({"validation/nll": val_nll, "validation/perplexity": math.exp(val_nll)}, step=step)
                if cfg.early_stop and val_nll < best_nll:
                    best_nll, stale_evals = val_nll, 0
                    export_model()  # with early stopping, model/ always holds the best weights so far
                elif cfg.early_stop:
                    stale_evals += 1
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                rate = (step - start_step) * tokens_per_step / max(1e-9, time.perf_counter() - started)
                bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{val_nll:.3f}", tok_s=f"{rate:,.0f}")
                accelerator.log({"train/loss": last_loss, "train/lr": lr, "train/tokens_per_s": rate}, step=step)
            bar.update(1)
            stopping = bool(cfg.early_stop) and stale_evals >= cfg.early_stop
            if step % cfg.save_every == 0 or step == cfg.max_steps or stopping:
                save_state()
                if not cfg.early_stop:
                    if step % cfg.eval_every and step != cfg.max_steps:
                        val_nll = validation_nll()  # the export records the NLL of the weights it holds
                    export_model()  # a usable model folder at every checkpoint, so a run stopped early leaves one
            if stopping:
                logger.info("early stop at step %d: %d evaluations without a better validation NLL than %.4f "
                            "(model/ holds those weights)", step, stale_evals, best_nll)
                break
    finally:
        bar.close()
    # A run killed after its last state folder was complete but before the export of it resumes here with
    # nothing left to train: the export is still owed.
    owed = torch.tensor([float(step > 0 and exported_step(out) is None if cfg.early_stop
                               else step > 0 and exported_step(out) != step)], device=accelerator.device)
    if accelerator.reduce(owed, reduction="sum").item() > 0:
        logger.info("exporting the model of step %d (the run stopped before its export was complete)", step)
        val_nll = validation_nll()
        export_model()
    accelerator.end_training()
    return TrainResult(step, tokens_seen, last_loss, val_nll, export_dir, accelerator.is_main_process)


def _initial_model(cfg: TrainConfig, model_config, tokenizer) -> torch.nn.Module:
    """A fresh model, or the --init-from checkpoint's weights (with LoRA adapters when asked). On --resume the
    weights are then replaced by the saved state's, so this only has to build the same module tree."""
    from musicmha.nn.model import MusicTransformer

    if not cfg.init_from:
        return MusicTransformer(model_config)
    from musicmha.nn.lora import add_adapters
    from musicmha.data.tokenizer import MusicTokenizer

    base_tokenizer = MusicTokenizer.load(cfg.init_from)
    if not tokenizer.same_vocabulary(base_tokenizer):
        raise ConfigError(f"{cfg.data} was prepared with another tokenizer than {cfg.init_from}: run "
                          f"`musicmha prepare MIDI_FOLDER --out TOKENS --tokenizer {cfg.init_from}` and train on that")
    base = MusicTransformer.from_pretrained(cfg.init_from)
    model = MusicTransformer(model_config)  # the config's dropout, the checkpoint's weights
    model.load_state_dict(base.state_dict(), strict=True)
    if cfg.lora_rank:
        trainable = add_adapters(model, cfg.lora_config())
        logger.info("LoRA rank %d: %s trainable parameters of %s", cfg.lora_rank, f"{trainable:,}",
                    f"{model.num_parameters():,}")
    return model


def _check_finite(accelerator, value: torch.Tensor, step: int, what: str) -> None:
    """Stop, before the weights are touched (or written), when any process sees a non-finite value."""
    bad = torch.tensor([0.0 if torch.isfinite(value.detach()).all() else 1.0], device=value.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item() > 0:
        raise TrainingError(f"non-finite {what} at step {step + 1}: stopping without saving these weights "
                            "(lower --learning-rate, or use bf16 rather than fp16)")


def export(model, tokenizer, folder: Path, *, cfg: TrainConfig, step: int, tokens_seen: int,
           train_loss: float, validation_nll: float, num_processes: int = 1) -> None:
    """The inference folder: config.json, model.safetensors, tokenizer.json, training.json, atomically."""
    if cfg.lora_rank:  # the adapter alone beside the run's model folder, then the merged model as usual
        from musicmha.nn.lora import merged_state, save_adapter

        adapter = folder.parent / ADAPTER_DIR
        with atomic_directory(adapter) as staging:
            save_adapter(model, cfg.lora_config(), staging)
            tokenizer.save(staging)
        plain = type(model)(model.config)
        plain.load_state_dict(merged_state(model), strict=True)
        model = plain
    # checkpoint.save writes the config with backend "auto": an exported model picks its own on the device
    # that loads it (training.json keeps the run's choice)
    info = {"data": str(Path(cfg.data).resolve()), "steps": step, "tokens_seen": tokens_seen,
            "final_train_loss": train_loss, "final_validation_nll": validation_nll,
            "preset": cfg.preset, "seed": cfg.seed, "num_processes": num_processes,
            "init_from": str(Path(cfg.init_from).resolve()) if cfg.init_from else None,
            "lora_rank": cfg.lora_rank,
            "train_config": cfg.to_dict()}
    checkpoint.save(folder, model, tokenizer, training=info)
