"""`musicmha fit-copy-head`: fit a checkpoint's copy head on a token split (validation) and save it beside it.

The weights are the maximum-likelihood mixture weight of each match-length bucket (musicmha/generation/copy_head.py),
from every predicted token of the split's windows, as `musicmha eval` cuts them. The head belongs to these
weights: retraining or re-exporting the model drops the file, and the head must be fitted again.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from musicmha.errors import ConfigError
from musicmha.evaluation.evaluate import log_probs, window_batches
from musicmha.generation.copy_head import MAX_WEIGHT, CopyHead, copy_distribution

logger = logging.getLogger(__name__)


@torch.no_grad()
def fit_copy_head(model, tokenizer, data_dir: str | Path, *, split: str = "validation",
                  max_pieces: int | None = None, batch_size: int = 8,
                  bucket_starts: tuple[int, ...] = CopyHead().bucket_starts, progress: bool = True,
                  sampling_boost: float = 1.0) -> CopyHead:
    """A CopyHead whose weights maximize the likelihood of the split's tokens under model + head."""
    from musicmha.data.dataset import TokenSplit

    data = TokenSplit(data_dir, split)
    n_pieces = len(data) if max_pieces is None else min(max_pieces, len(data))
    window, max_match = model.config.max_seq_len, bucket_starts[-1]
    model.eval()
    model_prob, copy_prob, lengths = [], [], []
    for inputs, targets in window_batches(data, n_pieces, "windows", window, batch_size, tokenizer.pad_id,
                                          progress=progress):
        logp = log_probs(model, inputs).cpu()
        q, length = copy_distribution(inputs, logp.shape[-1], max_match)
        valid = targets != -100
        safe = targets.clamp_min(0)[..., None]
        model_prob.append(logp.gather(-1, safe)[..., 0].exp()[valid].double().numpy())
        copy_prob.append(q.gather(-1, safe)[..., 0][valid].double().numpy())
        lengths.append(length[valid].numpy())
    if not model_prob:
        raise ConfigError(f"the {split} split of {data_dir} has no tokens to fit a copy head on")
    model_prob, copy_prob, lengths = (np.concatenate(x) for x in (model_prob, copy_prob, lengths))
    weights = fit_weights(model_prob, copy_prob, lengths, bucket_starts)
    weight = CopyHead(bucket_starts, weights).weight_of(torch.from_numpy(lengths)).double().numpy()
    mixed = (1 - weight) * model_prob + weight * copy_prob
    shares = np.bincount(np.searchsorted(bucket_starts, lengths, side="right"), minlength=len(bucket_starts) + 1)
    fitted_on = {"data": str(data_dir), "split": split, "pieces": n_pieces, "targets": int(lengths.size),
                 "nll_model": float(-np.log(model_prob).mean()), "nll_with_head": float(-np.log(mixed).mean()),
                 "bucket_shares": [round(float(x), 4) for x in shares[1:] / lengths.size]}
    logger.info("copy head on %s targets: weights %s, NLL %.4f -> %.4f", f"{lengths.size:,}", weights,
                fitted_on["nll_model"], fitted_on["nll_with_head"])
    if not math.isfinite(fitted_on["nll_with_head"]):
        raise ConfigError("the fitted copy head gives an infinite NLL: the model assigns 0 to a true token")
    return CopyHead(bucket_starts, weights, fitted_on, sampling_boost=sampling_boost)


def fit_weights(model_prob: np.ndarray, copy_prob: np.ndarray, lengths: np.ndarray,
                bucket_starts: tuple[int, ...], iterations: int = 200) -> tuple[float, ...]:
    """Maximum-likelihood bucket weights by EM, from per-target values: the model's probability of the true
    token, q's probability of it, and the match length. Capped at MAX_WEIGHT."""
    buckets = np.searchsorted(np.asarray(bucket_starts), lengths, side="right") - 1
    weights = []
    for b in range(len(bucket_starts)):
        pm, pc = model_prob[buckets == b], copy_prob[buckets == b]
        w = 0.5 if len(pm) else 0.0
        for _ in range(iterations if len(pm) else 0):
            posterior = w * pc / np.maximum(w * pc + (1 - w) * pm, 1e-30)
            w = min(float(posterior.mean()), MAX_WEIGHT)
        weights.append(0.0 if math.isnan(w) else round(w, 4))
    return tuple(weights)
