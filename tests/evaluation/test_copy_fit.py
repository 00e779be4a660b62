"""`musicmha fit-copy-head` and `musicmha eval` with a copy head, against a naive per-token mixture."""

import json
import math

import numpy as np
import torch
from reference import naive_copy

from musicmha.cli import main
from musicmha.data.dataset import TokenSplit
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.files import COPY_HEAD_FILE
from musicmha.generation.copy_head import CopyHead, load_copy_head
from musicmha.nn.model import MusicTransformer
from musicmha.training.config import TrainConfig


def _naive_nll(model, head: CopyHead | None, pieces, window: int) -> float:
    """Every window as `musicmha eval` cuts it, every token's mixture from plain loops."""
    total, count = 0.0, 0
    for piece in pieces:
        for start in range(0, len(piece) - 1, window):
            chunk = piece[start:start + window + 1].tolist()
            with torch.no_grad():
                probs = torch.softmax(model(torch.tensor([chunk[:-1]]))[0][0].double(), -1).numpy()
            q, lengths = naive_copy(chunk[:-1], probs.shape[-1], head.max_match if head else 1)
            for i, target in enumerate(chunk[1:]):
                w = float(head.weight_of(torch.tensor(lengths[i]))) if head else 0.0
                total -= math.log((1 - w) * probs[i, target] + w * q[i, target])
                count += 1
    return total / count


def test_fit_then_eval_with_and_without_the_head(real_tokens, tmp_path, capsys):
    tokenizer = MusicTokenizer.load(real_tokens)
    config = TrainConfig(data="x", out="y", preset="tiny", d_model=32, max_seq_len=48).model_config(tokenizer.vocab_size)
    MusicTransformer(config).save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    assert main(["fit-copy-head", "--checkpoint", str(tmp_path), "--data", str(real_tokens), "--split", "train",
                 "--max-pieces", "3", "--device", "cpu", "--sampling-boost", "2.5"]) == 0
    assert COPY_HEAD_FILE in capsys.readouterr().out
    head = load_copy_head(tmp_path, tokenizer)
    assert head.sampling_boost == 2.5
    assert main(["fit-copy-head", "--checkpoint", str(tmp_path), "--data", str(real_tokens), "--split", "train",
                 "--sampling-boost", "0"]) == 2  # refused before any work; the saved head stays
    assert "sampling_boost must be a positive number" in capsys.readouterr().err \
        and load_copy_head(tmp_path, tokenizer) == head
    fit = head.fitted_on
    assert fit["nll_with_head"] < fit["nll_model"] - 0.1  # an untrained model, chorales that repeat: copying pays
    assert max(head.weights) > 0.1

    model = MusicTransformer.from_pretrained(tmp_path).eval()
    pieces = [TokenSplit(real_tokens, "test").piece(0)]
    common = ["eval", "--checkpoint", str(tmp_path), "--data", str(real_tokens), "--max-pieces", "1", "--json",
              "--device", "cpu"]
    for flags, used in (([], head), (["--no-copy-head"], None)):
        assert main([*common, *flags]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["copy_head"] == (used is not None)
        assert np.isclose(result["nll"], _naive_nll(model, used, pieces, config.max_seq_len), rtol=1e-4)
