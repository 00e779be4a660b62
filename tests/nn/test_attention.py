"""musicmha.MultiHeadAttention against independent references: the naive loops of tests/reference.py and
torch.nn.MultiheadAttention."""

import pytest
import torch
from conftest import POSITIONS
from reference import naive_attention
from torch import nn

from musicmha import KVCache, MultiHeadAttention

TOL = 1e-5


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _grads(module: nn.Module, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in module.named_parameters()}
    grads.update({f"input{i}": t.grad.clone() for i, t in enumerate(inputs)})
    return grads


def _forward_backward(fn, module, inputs, weight):
    module.zero_grad()
    for t in inputs:
        t.grad = None
    out = fn()
    (out * weight).sum().backward()
    return out.detach(), _grads(module, *inputs)


def _check_against_reference(mha, x, kv=None, key_padding_mask=None):
    inputs = [x] if kv is None else [x, kv]
    weight = torch.randn(x.shape[0], x.shape[1], mha.d_model)
    fast_out, fast_grads = _forward_backward(
        lambda: mha(x, kv, key_padding_mask=key_padding_mask), mha, inputs, weight)
    ref_out, ref_grads = _forward_backward(
        lambda: naive_attention(mha, x, kv, key_padding_mask), mha, inputs, weight)
    assert _max_err(fast_out, ref_out) <= TOL
    assert fast_grads.keys() == ref_grads.keys()
    for name in fast_grads:
        assert _max_err(fast_grads[name], ref_grads[name]) <= TOL, name
        assert ref_grads[name].abs().sum() > 0, f"{name} got no gradient at all"


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("max_distance", [3, 40])  # clipped distances, and a table longer than the input
def test_causal_self_attention_matches_naive_reference(position, max_distance):
    mha = MultiHeadAttention(24, 3, position=position, max_relative_distance=max_distance)
    x = torch.randn(2, 11, 24, requires_grad=True)
    _check_against_reference(mha, x)


@pytest.mark.parametrize("position", POSITIONS)
def test_bidirectional_self_attention_matches_naive_reference(position):
    mha = MultiHeadAttention(24, 3, position=position, max_relative_distance=4, causal=False)
    x = torch.randn(2, 9, 24, requires_grad=True)
    _check_against_reference(mha, x, key_padding_mask=torch.tensor([[False] * 9, [False] * 6 + [True] * 3]))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("n_keys", [5, 13])
def test_cross_attention_matches_naive_reference(position, n_keys):
    mha = MultiHeadAttention(24, 3, position=position, max_relative_distance=6, causal=False, kv_dim=16)
    x = torch.randn(2, 8, 24, requires_grad=True)
    memory = torch.randn(2, n_keys, 16, requires_grad=True)
    padding = torch.zeros(2, n_keys, dtype=torch.bool)
    padding[1, n_keys - 2:] = True
    _check_against_reference(mha, x, memory, key_padding_mask=padding)


def _copy_into_torch_mha(mha: MultiHeadAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(mha.d_model, mha.n_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        ref.out_proj.bias.copy_(mha.out_proj.bias)
    return ref


def test_no_position_causal_matches_torch_multihead_attention():
    mha = MultiHeadAttention(32, 4, position="none")
    ref = _copy_into_torch_mha(mha)
    x = torch.randn(3, 17, 32)
    future = torch.triu(torch.ones(17, 17, dtype=torch.bool), diagonal=1)
    expected, _ = ref(x, x, x, attn_mask=future, need_weights=False)
    assert _max_err(mha(x), expected) <= TOL


def test_no_position_cross_attention_matches_torch_multihead_attention():
    mha = MultiHeadAttention(32, 4, position="none", causal=False)
    ref = _copy_into_torch_mha(mha)
    x, memory = torch.randn(3, 7, 32), torch.randn(3, 12, 32)
    padding = torch.zeros(3, 12, dtype=torch.bool)
    padding[0, 9:] = True
    padding[2, 1] = True
    expected, _ = ref(x, memory, memory, key_padding_mask=padding, need_weights=False)
    assert _max_err(mha(x, memory, key_padding_mask=padding), expected) <= TOL


@pytest.mark.parametrize("position", POSITIONS)
def test_causal_outputs_ignore_the_future(position):
    mha = MultiHeadAttention(24, 3, position=position, max_relative_distance=5)
    x = torch.randn(1, 14, 24)
    changed = x.clone()
    changed[:, 8:] = torch.randn(1, 6, 24)
    a, b = mha(x), mha(changed)
    assert _max_err(a[:, :8], b[:, :8]) <= 1e-6
    assert _max_err(a[:, 8:], b[:, 8:]) > 1e-3  # and the change did reach the later positions


@pytest.mark.parametrize("position", POSITIONS)
def test_chunked_decoding_with_cache_matches_full_forward(position):
    mha = MultiHeadAttention(24, 3, position=position, max_relative_distance=7).eval()
    x = torch.randn(2, 20, 24)
    cache = KVCache(2, 3, 32, 8)
    pieces, start = [], 0
    for size in [5, 1, 1, 4, 1, 8]:  # a prefill, then single tokens and chunks
        pieces.append(mha(x[:, start:start + size], kv_cache=cache, start_pos=start))
        start += size
    assert _max_err(torch.cat(pieces, dim=1), mha(x)) <= TOL
    # and against the naive reference for the last chunk, with the earlier inputs as the cached past
    last = naive_attention(mha, x[:, 12:], first_query_pos=12, past_kv_input=x[:, :12])
    assert _max_err(pieces[-1], last) <= TOL


def test_cache_refuses_overflow_and_wrong_batch():
    mha = MultiHeadAttention(16, 2)
    cache = KVCache(1, 2, 4, 8)
    with pytest.raises(ValueError, match="holds 4 positions"):
        mha(torch.randn(1, 5, 16), kv_cache=cache)
    with pytest.raises(ValueError, match="batch size"):
        mha(torch.randn(2, 1, 16), kv_cache=cache)


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="position must be one of"):
        MultiHeadAttention(16, 2, position="absolute")
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(18, 4)
    with pytest.raises(ValueError, match="not causal"):
        MultiHeadAttention(16, 2)(torch.randn(1, 3, 16), torch.randn(1, 4, 16))


def test_relative_embeddings_learn_only_the_distances_they_see():
    """Distances beyond the input length get no gradient; the clipped last distance collects the far ones."""
    mha = MultiHeadAttention(16, 2, position="relative", max_relative_distance=10)
    mha(torch.randn(1, 6, 16)).sum().backward()
    grad_per_distance = mha.scheme.relative_embeddings.grad.abs().sum(dim=(0, 2))
    assert (grad_per_distance[:6] > 0).all() and (grad_per_distance[6:] == 0).all()
