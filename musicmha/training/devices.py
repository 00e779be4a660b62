"""The device- and distribution-dependent parts of `musicmha train`, kept out of the loop in train.py.

- FSDP: wrapping replaces the parameters, so the optimizer must be built on the wrapped ones (FSDP1) or
  handed to `prepare` with the model so accelerate can swap them (FSDP2, which insists on that); tied
  embedding/output weights stay in one FSDP unit (the root) by wrapping each transformer Block alone.
- Export: under FSDP the full state dict is an all-gather, so every rank asks for it and the main one
  writes it.
- CUDA: pinned, non-blocking batch copies, TF32 matmuls and fused AdamW (none of them on the CPU).
- Host syncs: the finite checks and the loss of an optimizer step are read in one transfer per step,
  where the loop used to block three times per micro-step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from musicmha.errors import ConfigError, TrainingError
from musicmha.transfer import send

logger = logging.getLogger(__name__)

# What wrappers (DDP, torch.compile, FSDP1, activation checkpointing) put in front of parameter names.
_WRAPPER_PARTS = ("module", "_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")


def plain_name(name: str) -> str:
    """A parameter's name in the bare MusicTransformer, whatever wraps it."""
    return ".".join(part for part in name.split(".") if part not in _WRAPPER_PARTS)


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def keep_tied_weights_together(accelerator) -> None:
    """Wrap each Block in its own FSDP unit, leaving the embedding, the final norm and the output head in
    the root unit: the tied embedding/output matrix must live in exactly one unit (a size-based or no
    policy can put the embedding in a unit of its own, and the head then reads a freed shard)."""
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plugin = accelerator.state.fsdp_plugin
    configured = plugin.auto_wrap_policy
    if configured is not None and not (configured is transformer_auto_wrap_policy
                                       and plugin.transformer_cls_names_to_wrap in (None, ["Block"])):
        logger.warning("FSDP: wrapping each Block (transformer-based policy) instead of the configured "
                       "policy, so that the tied embedding and output weights share one unit")
    plugin.auto_wrap_policy = transformer_auto_wrap_policy
    plugin.transformer_cls_names_to_wrap = ["Block"]


def prepare_model_and_optimizer(accelerator, model: torch.nn.Module,
                                make_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer]):
    """`accelerator.prepare` of the model and of `make_optimizer(model)`, in the order the strategy needs.

    Without FSDP (one process, DDP) this is exactly the former single call, so run folders and their
    optimizer states are unchanged."""
    if not is_fsdp(accelerator):
        return accelerator.prepare(model, make_optimizer(model))
    keep_tied_weights_together(accelerator)
    if getattr(accelerator, "is_fsdp2", False):
        # FSDP2 maps the optimizer's parameters to the sharded DTensors by name inside this one call.
        return accelerator.prepare(model, make_optimizer(model))
    # FSDP1 replaces the parameters when it wraps: an optimizer built before would update orphans.
    wrapped = accelerator.prepare(model)
    return wrapped, accelerator.prepare(make_optimizer(wrapped))


def decay_split(model: torch.nn.Module, reference: torch.nn.Module | None = None):
    """(decayed, not decayed) trainable parameters of `model`: nanoGPT's rule (matrices decay; norms,
    biases and relative-position tables do not), decided on `reference`'s shapes by plain name, since
    FSDP1 hands out flattened (1-D) parameters under wrapped names."""
    shapes = {plain_name(n): p.dim() for n, p in (reference or model).named_parameters()}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue  # frozen weights (a LoRA run's base) are not handed to the optimizer at all
        dims = shapes.get(plain_name(name))
        if dims is None:
            raise ConfigError(f"FSDP parameter {name!r} has no counterpart in the model: set "
                              "fsdp_use_orig_params: true in the accelerate config (or use FSDP2)")
        (decay if dims >= 2 and not _is_position_table(name) else no_decay).append(param)
    return decay, no_decay


def _is_position_table(name: str) -> bool:
    """The relative position tables (per distance or per bucket) are embeddings: no weight decay."""
    return "relative_embeddings" in name or "bucket_embeddings" in name


def export_on_every_rank(accelerator, model: torch.nn.Module, build: Callable[[], torch.nn.Module],
                         write: Callable[[torch.nn.Module], None]) -> None:
    """Gather the whole model's weights on every rank (under FSDP `get_state_dict` is an all-gather: a rank
    that skips it hangs the others), then `write` a plain module holding them on the main process only."""
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        write(exportable_model(accelerator, model, state, build))
    del state
    accelerator.wait_for_everyone()


def exportable_model(accelerator, model: torch.nn.Module, state: dict[str, torch.Tensor],
                     build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """On the main process: a plain module holding `state` (the gathered weights under FSDP; without FSDP
    the unwrapped model itself). `build` makes an empty module of the same tree (adapters included)."""
    if not is_fsdp(accelerator):
        return accelerator.unwrap_model(model)
    with torch.random.fork_rng(devices=[]):  # initializing the copy must not move the run's random stream
        plain = build()
    plain.load_state_dict(state, strict=True)  # copies into the tied matrix twice: it stays tied
    return plain


def configure_device(device: torch.device) -> None:
    """TF32 tensor-core matmuls for fp32 work on CUDA (bf16 autocast regions are unaffected): about 8x the
    fp32 matmul rate on an H100/H200 for a 10-bit mantissa in the products; nothing on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def fused_optimizer(device: torch.device) -> bool | None:
    """fused=True for AdamW on CUDA (one kernel for all parameters); None (torch's default) elsewhere, so CPU
    runs and their saved optimizer states stay what they were."""
    return True if device.type == "cuda" else None


def to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """A batch of token ids on the training device: on CUDA from pinned memory without blocking the host
    (the next batch is cut while this one copies); on the CPU the array itself, no copy."""
    return send(torch.from_numpy(batch), device)


def checked_step_loss(accelerator, losses: list[torch.Tensor], norm: torch.Tensor | None,
                      step: int, grad_accum: int) -> float:
    """The mean loss of one optimizer step, after checking (on every process) that its micro-step losses and
    the gradient norm are finite: one host transfer for all of it, before the optimizer touches a weight.

    `norm` None: not checked (fp16's gradient scaler skips non-finite steps itself). The value is the same
    float the loop computed before (micro-step losses read one by one and added up in Python)."""
    values = torch.stack([loss.detach().float() for loss in losses])
    if norm is not None and hasattr(norm, "full_tensor"):  # FSDP2 may return the norm as a DTensor
        norm = norm.full_tensor()
    bad_norm = (~torch.isfinite(norm.detach())).any() if norm is not None else torch.zeros((), dtype=torch.bool,
                                                                                          device=values.device)
    bad = torch.stack([(~torch.isfinite(values)).any(), bad_norm.to(values.device)]).float()
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    bad_loss, bad_grad, *read = torch.cat([bad, values]).tolist()  # the one sync of the step
    for what, flag in (("loss", bad_loss), ("gradient", bad_grad)):  # a NaN loss makes a NaN norm too
        if flag > 0:
            raise non_finite(what, step)
    return sum(value / grad_accum for value in read)


def check_finite(accelerator, value: torch.Tensor, step: int, what: str) -> None:
    """Stop, before the weights are touched (or written), when any process sees a non-finite value."""
    bad = torch.tensor([0.0 if torch.isfinite(value.detach()).all() else 1.0], device=value.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item() > 0:
        raise non_finite(what, step)


def non_finite(what: str, step: int) -> TrainingError:
    """The one message for a run stopped by a NaN or an infinity (0-based `step`)."""
    return TrainingError(f"non-finite {what} at step {step + 1}: stopping without saving these weights "
                         "(lower --learning-rate, or use bf16 rather than fp16)")
