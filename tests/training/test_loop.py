"""The pieces of the training loop that need no model: the saved progress and the learning-rate schedule."""

import json
import math

import pytest

from musicmha.training.config import TrainConfig
from musicmha.training.loop import TrainState, learning_rate


def test_progress_round_trips_through_json():
    state = TrainState(step=7, tokens_seen=700, train_loss=2.5, validation_nll=2.7, best_validation_nll=2.6,
                       evaluations_without_improvement=1, start_step=3, started=12.0)
    saved = json.loads(json.dumps(state.progress()))
    assert saved == {"step": 7, "tokens_seen": 700, "train_loss": 2.5, "best_validation_nll": 2.6,
                     "evaluations_without_improvement": 1}  # progress.json as it always was: no timing
    back = TrainState.from_progress(saved)
    assert (back.step, back.tokens_seen, back.train_loss, back.best_validation_nll,
            back.evaluations_without_improvement) == (7, 700, 2.5, 2.6, 1)
    assert math.isnan(back.validation_nll) and back.start_step == 0


def test_no_best_yet_is_saved_as_null_and_older_progress_files_load():
    fresh = TrainState()
    assert fresh.progress()["best_validation_nll"] is None  # JSON has no infinity
    assert TrainState.from_progress(json.loads(json.dumps(fresh.progress()))).best_validation_nll == math.inf
    old = TrainState.from_progress({"step": 4, "tokens_seen": 40})  # written before early stopping existed
    assert (old.step, old.tokens_seen) == (4, 40)
    assert math.isnan(old.train_loss) and old.best_validation_nll == math.inf
    assert old.evaluations_without_improvement == 0


def test_learning_rate_warms_up_then_decays_to_its_floor():
    cfg = TrainConfig(data="d", out="o", learning_rate=1e-3, warmup_steps=4, max_steps=20, min_lr_ratio=0.1)
    rates = [learning_rate(step, cfg) for step in range(25)]
    assert rates[:5] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert all(a > b for a, b in zip(rates[4:20], rates[5:20]))  # strictly falling during the decay
    assert rates[12] == pytest.approx(1e-4 + 0.5 * 9e-4)  # halfway down the cosine
    assert rates[20:] == pytest.approx([1e-4] * 5)  # the floor, also past max_steps
    planned = TrainConfig(data="d", out="o", learning_rate=1e-3, warmup_steps=4, max_steps=20, decay_steps=36)
    assert learning_rate(20, planned) == pytest.approx(1e-4 + 0.5 * 9e-4)  # a run planned in two parts
