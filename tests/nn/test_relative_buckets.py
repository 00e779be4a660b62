"""Log-bucketed relative distances (T5 style): the bucket map against a plain loop, and a bucketed model against
the same model with one embedding per distance holding the buckets' embeddings spread out by hand."""

import math

import pytest
import torch
from conftest import tiny_config

from musicmha import ModelConfig, MultiHeadAttention, MusicTransformer
from musicmha.errors import ConfigError
from musicmha.nn.positions import distance_buckets


def _naive_bucket(distance: int, n_buckets: int, max_distance: int) -> int:
    exact = n_buckets // 2
    if distance < exact:
        return distance
    far = exact + int(math.log(distance / exact) / math.log((max_distance + 1) / exact) * (n_buckets - exact))
    return min(far, n_buckets - 1)


@pytest.mark.parametrize("max_distance, n_buckets", [(1023, 32), (95, 8), (24, 24), (7, 2)])
def test_the_bucket_map_matches_a_plain_loop(max_distance, n_buckets):
    buckets = distance_buckets(max_distance, n_buckets)
    assert buckets.tolist() == [_naive_bucket(d, n_buckets, max_distance) for d in range(max_distance + 1)]
    assert buckets[0] == 0 and buckets[-1] == n_buckets - 1  # the farthest distance reaches the last bucket
    assert bool((buckets[1:] >= buckets[:-1]).all())  # farther never maps nearer
    assert buckets[: n_buckets // 2].tolist() == list(range(n_buckets // 2))  # near distances stay exact


def test_bad_bucket_counts_are_refused():
    with pytest.raises(ConfigError, match="relative_buckets"):
        ModelConfig(vocab_size=8, max_seq_len=16, relative_buckets=1)
    with pytest.raises(ConfigError, match="relative_buckets"):
        ModelConfig(vocab_size=8, max_seq_len=16, relative_buckets=16)  # more buckets than distances 1..15
    with pytest.raises(ValueError, match="relative buckets"):
        distance_buckets(10, 11)


def _spread_copy(bucketed: MusicTransformer) -> MusicTransformer:
    """The same weights as a per-distance model: each distance's embedding is its bucket's, copied by hand."""
    config = tiny_config(relative_buckets=0, dropout=0.0)
    plain = MusicTransformer(config)
    state = bucketed.state_dict()
    for key in list(state):
        if key.endswith("bucket_embeddings"):
            table = state.pop(key)
            index = distance_buckets(config.max_relative_distance, bucketed.config.relative_buckets)
            state[key.replace("bucket_embeddings", "relative_embeddings")] = torch.stack(
                [table[:, int(b)] for b in index], dim=1)
    plain.load_state_dict(state)
    return plain


@pytest.mark.parametrize("backend", ["sdpa", "blocked"])
def test_a_bucketed_model_is_the_per_distance_model_with_shared_embeddings(backend):
    torch.manual_seed(0)
    bucketed = MusicTransformer(tiny_config(relative_buckets=8, attention_backend=backend))
    plain = _spread_copy(bucketed)
    tokens = torch.randint(0, 61, (2, 96))
    logits, loss = bucketed(tokens[:, :-1], tokens[:, 1:])
    want, want_loss = plain(tokens[:, :-1], tokens[:, 1:])
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=1e-5)
    # each bucket's gradient is the sum of its distances' gradients
    loss.backward()
    want_loss.backward()
    grad = bucketed.blocks[0].attn.scheme.bucket_embeddings.grad
    spread = plain.blocks[0].attn.scheme.relative_embeddings.grad
    index = distance_buckets(bucketed.config.max_relative_distance, 8)
    summed = torch.zeros_like(grad).index_add_(1, index, spread)
    torch.testing.assert_close(grad, summed, atol=1e-5, rtol=1e-4)
    assert bool((grad.abs().sum(dim=(0, 2)) > 0).all())  # every bucket, far ones included, learns


def test_cached_decoding_reads_the_buckets_too():
    torch.manual_seed(0)
    model = MusicTransformer(tiny_config(relative_buckets=8)).eval()
    tokens = torch.randint(0, 61, (1, 40))
    full = model(tokens)[0][:, -1]
    cache = model.new_kv_cache(1, 96)
    model(tokens[:, :-1], kv_cache=cache, start_pos=0)
    step = model(tokens[:, -1:], kv_cache=cache, start_pos=39)[0][:, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)


def test_bidirectional_attention_buckets_each_direction():
    torch.manual_seed(0)
    attention = MultiHeadAttention(32, 4, position="relative", max_relative_distance=24, causal=False,
                                   relative_buckets=6)
    table = attention.scheme.table()
    assert table.shape == (4, 49, 8)  # distances -24..24 read from 2 x 6 learned rows
    index = attention.scheme.bucket_of_distance
    assert index[24] == 0 and set(index[:24].tolist()).isdisjoint(set(index[24:].tolist()))


def test_a_bucketed_checkpoint_round_trips(tmp_path):
    model = MusicTransformer(tiny_config(relative_buckets=8))
    model.save_pretrained(tmp_path)
    loaded = MusicTransformer.from_pretrained(tmp_path)
    assert loaded.config.relative_buckets == 8
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_training_takes_the_bucket_count_as_a_shape_option():
    from musicmha.cli import build_parser
    from musicmha.training.config import SHAPE_FIELDS, TrainConfig

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--relative-buckets", "32"])
    assert args.relative_buckets == 32
    config = TrainConfig(data="d", out="o", preset="tiny", relative_buckets=32, max_seq_len=256)
    assert config.model_config(64).relative_buckets == 32
    assert "relative_buckets" in SHAPE_FIELDS  # --init-from refuses a contradicting bucket count
