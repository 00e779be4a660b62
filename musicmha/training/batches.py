"""A training step's batch: the rows (dataset.batch_for_step, with the run's conditioning, reprise and FIM
rows) and, with a copy weight, the loss weight of each target (musicmha/data/copy_targets.py).

Both are pure functions of (seed, step, rank), so a resumed run sees exactly the batches and weights a run
that never stopped would have seen.
"""

from __future__ import annotations

from typing import Any

import torch

from musicmha.data.copy_targets import copy_weights
from musicmha.data.dataset import batch_for_step
from musicmha.training.devices import to_device


def train_batch(run: Any, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(rows (B, L + 1) on the device, target weights (B, L) or None) of micro-step `index` of `run`
    (a loop.TrainRun)."""
    cfg, accelerator = run.cfg, run.accelerator
    batch = batch_for_step(run.train_split, seq_len=run.model_config.max_seq_len, batch_size=cfg.batch_size,
                           seed=cfg.seed, step=index, rank=accelerator.process_index,
                           world_size=accelerator.num_processes, fim=run.fim, fim_rate=cfg.fim_rate,
                           reprise_rate=cfg.reprise_rate, bar_id=run.tokenizer.bar_id,
                           condition=run.tokenizer.condition_tokens, condition_dropout=cfg.condition_dropout,
                           part_rate=cfg.part_rate, part_spec=run.part_spec,
                           part_layout=cfg.part_layout)
    weights = None
    if cfg.copy_weight != 1:
        # Boundaries and sentinels break a match: a repeat across two pieces, or across a FIM seam, is not
        # one the model could copy from.
        split = run.train_split
        boundaries = {split.bos_id, split.eos_id, split.pad_id, *(run.fim.all_ids if run.fim else ())}
        weights = to_device(copy_weights(batch, cfg.copy_weight, cfg.copy_min_match, boundaries),
                            accelerator.device)
    return to_device(batch, accelerator.device), weights
