"""The synthetic copy tasks against naive loops, a tiny relative model that learns x;x, and the repeat probe's row."""

import math

import pytest
import torch

from musicmha import ModelConfig, MusicTransformer
from musicmha.evaluation.induction import (CopyTask, copy_loss, copy_rows, repeat_nll, repeat_row, split_losses,
                                          train_copy)


def test_xx_rows_are_x_twice_and_the_mask_is_the_second_half():
    tokens, mask = copy_rows("xx", 5, 7, 9, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == mask.shape == (5, 18)
    for b in range(5):
        for t in range(18):
            assert bool(mask[b, t]) == (t >= 9)
            if t >= 9:
                assert tokens[b, t] == tokens[b, t - 9]
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 7


@pytest.mark.parametrize("skip", [0, 3])
def test_far_rows_copy_a_segment_from_an_allowed_distance_and_mask_its_tail(skip):
    segment, low, high, length, vocab = 8, 12, 40, 60, 50
    tokens, mask = copy_rows("far", 64, vocab, length, segment=segment, min_distance=low, max_distance=high,
                             skip=skip, generator=torch.Generator().manual_seed(skip))
    assert tokens.shape == mask.shape == (64, length)
    distances = set()
    for b in range(64):
        row, marked = tokens[b].tolist(), [t for t in range(length) if mask[b, t]]
        assert len(marked) == segment - skip
        assert marked == list(range(marked[0], marked[0] + segment - skip))  # one contiguous run
        start = marked[0] - skip  # where the copy begins
        # some allowed distance puts the whole segment, its unscored head included, earlier in the row
        found = [d for d in range(low, high + 1) if start - d >= 0
                 and row[start - d:start - d + segment] == row[start:start + segment]]
        assert found, f"row {b}: no earlier copy of the masked segment"
        distances.add(found[0])
    assert len(distances) > 10  # the distance is drawn, not fixed


def test_far_task_refuses_rows_too_short_for_its_distances():
    with pytest.raises(ValueError, match="cannot hold"):
        CopyTask("far", 16, 50, segment=8, min_distance=12, max_distance=48)
    with pytest.raises(ValueError, match="task kind"):
        CopyTask("zz", 16, 50)


def _scored_rows():
    """A tiny untrained model, three x;x rows and the model's log-probabilities of them, for scoring by hand."""
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2, max_seq_len=16,
                                         dropout=0.0))
    tokens, mask = copy_rows("xx", 3, 11, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logp = torch.log_softmax(model(tokens[:, :-1])[0], -1)
    return model, tokens, mask, logp


def test_copy_loss_scores_only_the_masked_targets():
    model, tokens, mask, logp = _scored_rows()
    by_hand = [-float(logp[b, t - 1, tokens[b, t]]) for b in range(3) for t in range(1, 12) if mask[b, t]]
    assert copy_loss(model, tokens, mask) == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-5)


def test_a_tiny_relative_model_learns_to_copy_x_x():
    """Copying at a fixed distance is what relative attention makes easy: 75 steps here (1-2 s on one thread).
    A model that cannot read the first half stays at ln(16) = 2.77."""
    vocab, threads = 16, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread is fastest, and steady on shared cores
    try:
        torch.manual_seed(0)
        model = MusicTransformer(ModelConfig(vocab_size=vocab, d_model=64, n_layers=2, n_heads=4, dropout=0.0,
                                             max_seq_len=23, position="relative"))
        run = train_copy(model, CopyTask("xx", vocab, 12), 200, batch=32, lr=3e-3, eval_every=25, eval_rows=64,
                         seed=0, stop_below=0.1)
    finally:
        torch.set_num_threads(threads)
    assert run.curve[0][1] > 0.9 * math.log(vocab)  # it starts unable to copy
    assert run.steps_to(0.1) is not None, run.curve
    assert run.curve[-1][1] < 0.1 and run.tokens_per_second > 0


def test_repeat_row_starts_at_the_first_bar_line_and_holds_the_passage_twice():
    bar, bos = 4, 1
    ids = [1, 9, 8, 4, 10, 11, 4, 12, 13, 14, 2]  # BOS, two tokens before the first bar line, ...
    assert repeat_row(ids, bar, bos, 5) == [1, 4, 10, 11, 4, 12, 4, 10, 11, 4, 12]
    assert repeat_row(ids, bar, bos, 8) == [1, *ids[3:11], *ids[3:11]]  # exactly enough tokens
    assert repeat_row(ids, bar, bos, 9) is None  # too short from the first bar line
    assert repeat_row([1, 5, 6, 7], bar, bos, 2) is None  # no bar line


def test_repeat_nll_splits_the_row_into_the_two_hearings():
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2, max_seq_len=16,
                                         dropout=0.0)).eval()
    row = [1, 4, 5, 6, 4, 5, 6]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([row[:-1]]))[0][0], -1)
    nll = [-float(logp[t - 1, row[t]]) for t in range(1, 7)]
    first, repeat = repeat_nll(model, row)
    assert first == pytest.approx(sum(nll[:3]) / 3, rel=1e-5)
    assert repeat == pytest.approx(sum(nll[3:]) / 3, rel=1e-5)


def test_far_rows_with_several_copies_hold_each_copy_exactly_and_disjoint():
    segment, low, high, length, vocab, copies, skip = 6, 8, 60, 72, 1000, 4, 2
    task = CopyTask("far", vocab, length, segment=segment, min_distance=low, max_distance=high, skip=skip,
                    copies=copies)
    tokens, mask = task.rows(32, torch.Generator().manual_seed(3))
    assert tokens.shape == mask.shape == (32, length)
    for b in range(32):
        row, marked = tokens[b].tolist(), [t for t in range(length) if mask[b, t]]
        assert len(marked) == copies * (segment - skip)  # the copies do not overlap
        runs = [marked[i:i + segment - skip] for i in range(0, len(marked), segment - skip)]
        for run in runs:
            assert run == list(range(run[0], run[0] + segment - skip))
            start = run[0] - skip
            # with 1000 tokens, a match of 6 is no accident: the copy is exact, from an allowed distance
            assert any(start - d >= 0 and row[start - d:start - d + segment] == row[start:start + segment]
                       for d in range(low, high + 1)), f"row {b}: copy at {start} has no source"
    # one copy keeps the single-copy rows as they were
    one = CopyTask("far", vocab, length, segment=segment, min_distance=low, max_distance=high, skip=skip)
    assert torch.equal(one.rows(4, torch.Generator().manual_seed(5))[0],
                       copy_rows("far", 4, vocab, length, segment=segment, min_distance=low, max_distance=high,
                                 skip=skip, copies=1, generator=torch.Generator().manual_seed(5))[0])
    with pytest.raises(ValueError, match="cannot hold 7 copies"):
        CopyTask("far", vocab, length, segment=segment, min_distance=low, max_distance=high, copies=7)


def test_split_losses_are_the_copy_loss_and_the_loss_elsewhere():
    model, tokens, mask, logp = _scored_rows()
    other = [-float(logp[b, t - 1, tokens[b, t]]) for b in range(3) for t in range(1, 12) if not mask[b, t]]
    copy, rest = split_losses(model, tokens, mask)
    assert copy == pytest.approx(copy_loss(model, tokens, mask), rel=1e-5)
    assert rest == pytest.approx(sum(other) / len(other), rel=1e-5)


def test_a_warmup_trains_its_steps_on_the_warmup_rows(monkeypatch):
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(vocab_size=8, d_model=16, n_layers=1, n_heads=2, max_seq_len=19,
                                         dropout=0.0))
    task = CopyTask("far", 8, 20, segment=4, min_distance=4, max_distance=16, skip=1)
    seen = []
    original = CopyTask.rows

    def spy(self, batch, generator):
        seen.append(self.kind)
        return original(self, batch, generator)

    monkeypatch.setattr(CopyTask, "rows", spy)
    run = train_copy(model, task, 5, batch=2, eval_every=5, eval_rows=2, train_on="all",
                     warmup=CopyTask("xx", 8, 10), warmup_steps=2)
    assert seen == ["far", "xx", "xx", "far", "far", "far"]  # the held-out batch, then the 5 steps
    assert [s for s, _ in run.other_curve] == [s for s, _ in run.curve] == [0, 5]
    with pytest.raises(ValueError, match="as long as"):
        train_copy(model, task, 1, warmup=CopyTask("xx", 8, 4), warmup_steps=1)


def test_the_benchmark_runs_a_warmed_up_several_copy_task(tmp_path):
    """benchmarks/induction.py's --copies and --warmup-steps reach the task and the loop (a few seconds)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "run.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "induction.py"
    done = subprocess.run([sys.executable, str(script), "--tasks", "far", "--modes", "relative", "--backends", "sdpa",
                           "--vocab", "16", "--row-length", "40", "--segment", "4", "--min-distance", "8",
                           "--max-distance", "30", "--skip", "1", "--copies", "3", "--train-on", "all", "--warmup-steps", "2",
                           "--warmup-kind", "xx", "--steps", "4", "--batch", "2", "--eval-every", "2",
                           "--eval-rows", "4", "--d-model", "16", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["settings"]["copies"] == 3 and record["settings"]["warmup_steps"] == 2
    (result,) = record["results"]
    assert [s for s, _ in result["curve"]] == [0, 2, 4] and len(result["other_curve"]) == 3
    assert result["final_other_loss"] > 0 and "steps_to_0.5" in result
