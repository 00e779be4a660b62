"""`musicmha train`: the accelerate training loop (CPU, one GPU, DDP/FSDP through `accelerate launch`).

`train` checks the run folder, builds the model, optimizer and data once (a `loop.TrainRun`), restores the
`loop.TrainState` of a resumed run, and hands both to `loop.fit`. Batches are a pure function of (seed, step,
rank), the learning rate a pure function of the step, and RNG/optimizer states come back through
accelerate's save_state/load_state: so a resumed run continues exactly where it stopped. Every checkpoint
folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import functools
import json
import logging
import dataclasses
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path

import torch

from musicmha.atomic_files import write_text_atomic
from musicmha.errors import ConfigError, TrainingError
from musicmha.files import PROGRESS_FILE, RESUME_LOG_FILE, TRAIN_CONFIG_FILE
from musicmha.training.config import TrainConfig
from musicmha.training.devices import configure_device, decay_split, fused_optimizer, prepare_model_and_optimizer
from musicmha.training.export import ADAPTER_DIR, export
from musicmha.training.loop import TrainRun, TrainState, fit, learning_rate, maybe_export
from musicmha.training.run_folder import EXPORT_DIR, STATE_DIR, remove_stale, saved_config, state_folders, writing

logger = logging.getLogger(__name__)

__all__ = ["ADAPTER_DIR", "EXPORT_DIR", "STATE_DIR", "TrainResult", "TrainingError", "export", "learning_rate",
           "train"]
# Options that may change when resuming: they do not alter what the run computes.
# attention_backend: every backend computes the same function, so a run may move to a faster one (a GPU).
RESUMABLE_CHANGES = {"resume", "max_steps", "save_every", "eval_every", "eval_batches", "log_every",
                     "tensorboard", "keep_last", "compile", "data", "out", "early_stop", "attention_backend"}
# Options that may change when resuming although they change the batches from there on: a curriculum, such as
# reprise rows switched on for the last part of a long run. Model, optimizer and schedule stay exact; the change
# is logged and appended to the run folder's RESUME_LOG_FILE, so that a model card can name it.
CURRICULUM_CHANGES = {"fim_rate", "reprise_rate", "part_rate", "part_layout", "copy_weight", "copy_min_match", "condition_dropout"}


@dataclass
class TrainResult:
    steps: int
    tokens_seen: int
    final_train_loss: float
    final_validation_nll: float
    export_dir: Path
    is_main_process: bool = True  # False on the other ranks of a multi-process run


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or resume) a MusicTransformer on a prepared token folder; returns the final numbers."""
    run, resume_from = _start(cfg)
    state = _restore(run, resume_from)
    _open_run_folder(run, state)
    fit(run, state)
    maybe_export(run, state)
    run.accelerator.end_training()
    return TrainResult(state.step, state.tokens_seen, state.train_loss, state.validation_nll, run.export_dir,
                       run.accelerator.is_main_process)


def _start(cfg: TrainConfig) -> tuple[TrainRun, Path | None]:
    """Everything fixed for the run, and the state folder to resume from; refusals come before any work."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from musicmha.data.dataset import TokenSplit
    from musicmha.data.tokenizer import MusicTokenizer

    out = Path(cfg.out)
    train_split, val_split = TokenSplit(cfg.data, "train"), TokenSplit(cfg.data, "validation")
    tokenizer = MusicTokenizer.load(Path(cfg.data))
    model_config = cfg.model_config(tokenizer.vocab_size)
    fim = tokenizer.fim_tokens
    if cfg.fim_rate and fim is None:
        raise ConfigError(f"--fim-rate {cfg.fim_rate}: the tokenizer of {cfg.data} has no fill-in-the-middle "
                          "tokens; prepare the data again with this version of musicmha")
    if cfg.part_rate and (fim is None or tokenizer.is_bpe):
        raise ConfigError(f"--part-rate {cfg.part_rate}: part rows need a tokenizer with fill-in-the-middle tokens "
                          "and without BPE")
    resume_from = _check_run_folder(cfg, out)

    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              log_with="tensorboard" if cfg.tensorboard else None, project_dir=str(out))
    device = accelerator.device
    if model_config.attention_backend == "flex" and device.type != "cuda":
        raise ConfigError(f"attention_backend flex trains on CUDA only (FlexAttention has no backward on "
                          f"{device.type}): use blocked or sdpa here")
    configure_device(device)
    set_seed(cfg.seed)  # identical initial weights in every process
    build = functools.partial(_initial_model, cfg, model_config, tokenizer)
    model = build()
    bare, fused = model, fused_optimizer(device)
    if fused:
        model.to(device)  # fused AdamW wants its parameters on the GPU when it is built
    model, optimizer = prepare_model_and_optimizer(
        accelerator, model, functools.partial(_optimizer, cfg=cfg, reference=bare, fused=fused))
    forward = torch.compile(model) if cfg.compile else model
    run = TrainRun(cfg=cfg, accelerator=accelerator, model=model, forward=forward, optimizer=optimizer,
                   model_config=model_config, tokenizer=tokenizer, train_split=train_split, val_split=val_split,
                   fim=fim, out=out, build=build, part_spec=tokenizer.grammar_spec() if cfg.part_rate else None)
    return run, resume_from


def _restore(run: TrainRun, resume_from: Path | None) -> TrainState:
    """A fresh state, or the saved one with its weights, optimizer and RNG states loaded."""
    if resume_from is None:
        return TrainState()
    run.accelerator.load_state(str(resume_from))
    state = TrainState.from_progress(json.loads((resume_from / PROGRESS_FILE).read_text()))
    logger.info("resumed from %s at step %d", resume_from, state.step)
    return state


def _open_run_folder(run: TrainRun, state: TrainState) -> None:
    """Create the run folder, sweep what a killed run left half-written, note a resume in RESUME_LOG_FILE, save
    the resolved configuration."""
    cfg, out = run.cfg, run.out
    if run.accelerator.is_main_process:
        with writing(out):  # a read-only or full run folder fails here, before any work
            out.mkdir(parents=True, exist_ok=True)
            remove_stale(out)
            before = saved_config(out)
            if state.step and before is not None:
                _log_resume(out, state.step, before, cfg.to_dict())
            write_text_atomic(out / TRAIN_CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2) + "\n")
    if cfg.tensorboard:
        run.accelerator.init_trackers("musicmha", config={k: v for k, v in cfg.to_dict().items()
                                                          if isinstance(v, (int, float, str, bool))})


def _as_run(saved: dict) -> dict:
    """A run folder's saved settings; an option newer than the folder is missing there: it ran with the default."""
    return {**{f.name: f.default for f in dataclasses.fields(TrainConfig)}, **saved}


def _log_resume(out: Path, step: int, before: dict, now: dict) -> None:
    """Append {step, time, changed: {option: [before, now]}} to RESUME_LOG_FILE; warn of a curriculum change."""
    before = _as_run(before)
    changed = {k: [before.get(k), v] for k, v in now.items() if k != "resume" and before.get(k) != v}
    curriculum = sorted(changed.keys() & CURRICULUM_CHANGES)
    if curriculum:
        logger.warning("resuming at step %d with a new %s: the batches change from here on", step,
                       ", ".join(f"{k} ({changed[k][0]} -> {changed[k][1]})" for k in curriculum))
    record = {"step": step, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "changed": changed}
    with open(out / RESUME_LOG_FILE, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


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
    if not cfg.resume:
        if states:
            raise ConfigError(f"{out} already holds checkpoints: pass --resume to continue it, "
                              "or choose another --out")
        return None
    if not states:
        logger.warning("--resume: no checkpoint in %s yet, starting from scratch", out)
        return None
    saved = saved_config(out)
    if saved is not None:
        before = _as_run(saved)
        now = cfg.to_dict()
        may_change = RESUMABLE_CHANGES | CURRICULUM_CHANGES
        changed = sorted(k for k in now if k not in may_change and before.get(k) != now[k])
        if changed:
            raise ConfigError(f"--resume with different settings than the run in {out}: {', '.join(changed)}")
        if before.get("decay_steps") is None and before.get("max_steps") != cfg.max_steps:
            logger.warning("max_steps changed from %s to %s: the cosine schedule stretches from here on "
                           "(set decay_steps to plan a run in several parts)", before.get("max_steps"),
                           cfg.max_steps)
    return states[-1]


def grown_state(base: torch.nn.Module, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """base's weights, plus `model`'s own (zero-initialised) ones for what base lacks: previous-token tables
    added over a checkpoint trained with fewer (TrainConfig's GROWABLE_FIELDS)."""
    state = base.state_dict()
    return {**{k: v for k, v in model.state_dict().items() if k.startswith("previous_embeddings.")}, **state}


def carry_over(base: torch.nn.Module, model: torch.nn.Module, rows: dict[int, int]) -> None:
    """`model` takes every weight of `base`; its token embedding (tied to the output head) takes base's rows
    by token (`rows`: new id -> base id), and the new tokens keep their fresh initialisation. For a data
    vocabulary that extends the checkpoint's (the style and density tokens after musicmha-1k's)."""
    state = grown_state(base, model)
    embedding = model.token_embedding.weight.detach().clone()
    new_ids, base_ids = (torch.tensor(ids) for ids in zip(*sorted(rows.items())))
    embedding[new_ids] = state["token_embedding.weight"][base_ids]
    state = {**state, "token_embedding.weight": embedding, "lm_head.weight": embedding}
    model.load_state_dict(state, strict=True)


def _initial_model(cfg: TrainConfig, model_config, tokenizer) -> torch.nn.Module:
    """A fresh model, or the --init-from checkpoint's weights (with LoRA adapters when asked). On --resume the
    weights are then replaced by the saved state's, so this only has to build the same module tree."""
    from musicmha.nn.model import MusicTransformer

    if not cfg.init_from:
        return MusicTransformer(model_config)
    from musicmha.nn.lora import add_adapters
    from musicmha.data.tokenizer import MusicTokenizer

    base_tokenizer = MusicTokenizer.load(cfg.init_from)
    rows = None if tokenizer.same_vocabulary(base_tokenizer) else tokenizer.rows_from(base_tokenizer)
    if not tokenizer.same_vocabulary(base_tokenizer) and (rows is None or cfg.lora_rank):
        raise ConfigError(f"{cfg.data} was prepared with another tokenizer than {cfg.init_from}: run "
                          f"`musicmha prepare MIDI_FOLDER --out TOKENS --tokenizer {cfg.init_from}` and train on that")
    base = MusicTransformer.from_pretrained(cfg.init_from)
    model = MusicTransformer(model_config)  # the config's dropout, the checkpoint's weights
    if rows is None:
        model.load_state_dict(grown_state(base, model), strict=True)
    else:
        carry_over(base, model, rows)
        logger.info("%s: %d token rows carried over by name, %d new tokens start fresh", cfg.init_from,
                    len(rows), model_config.vocab_size - len(rows))
    if cfg.lora_rank:
        trainable = add_adapters(model, cfg.lora_config())
        logger.info("LoRA rank %d: %s trainable parameters of %s", cfg.lora_rank, f"{trainable:,}",
                    f"{model.num_parameters():,}")
    return model
