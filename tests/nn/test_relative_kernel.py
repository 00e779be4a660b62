"""Every attention backend against the naive reference, and the blocked kernel's own backward checked
numerically (torch.autograd.gradcheck), dropout included."""

import pytest
import torch
from conftest import tiny_config
from test_attention import TOL, _check_against_reference, _max_err
from reference import naive_attention

from musicmha import KVCache, ModelConfig, MultiHeadAttention, MusicTransformer
from musicmha.errors import ConfigError
from musicmha.nn.relative_kernel import blocked_causal_relative_attention


@pytest.mark.parametrize("backend", ["sdpa", "blocked"])
@pytest.mark.parametrize("length,block_size,max_distance", [
    (11, 4, 3),  # blocks that do not divide the length, clipped distances
    (17, 1, 40),  # one row per block, a table longer than the input
    (9, 64, 8),  # one block larger than the sequence
    (32, 8, 31),  # every distance its own embedding, blocks dividing the length
])
def test_relative_backends_match_naive_reference(backend, length, block_size, max_distance):
    mha = MultiHeadAttention(24, 3, position="relative", max_relative_distance=max_distance,
                             backend=backend, block_size=block_size)
    x = torch.randn(2, length, 24, requires_grad=True)
    heads = torch.zeros(2, 3, length, 8)
    assert mha.resolve_backend(heads, heads, 0, None) == backend
    _check_against_reference(mha, x)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_backend_matches_naive_reference_forward():
    """FlexAttention's backward needs CUDA; on the CPU its (eager) forward still checks our score_mod."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    mha = MultiHeadAttention(24, 3, position="relative", max_relative_distance=5, backend="flex").eval()
    x = torch.randn(2, 19, 24)
    with torch.no_grad():
        assert _max_err(mha(x), naive_attention(mha, x)) <= TOL


@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_blocked_kernel_backward_passes_gradcheck(dropout_p):
    """The hand-written backward (softmax, unskew, dropout) against finite differences in float64; the
    dropout mask is made the same on every call by reseeding."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 7, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rel_emb = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)

    def attention(q, k, v, rel_emb):
        torch.manual_seed(1234)
        return blocked_causal_relative_attention(q, k, v, rel_emb, scale=0.6, dropout_p=dropout_p, block_size=3)

    assert torch.autograd.gradcheck(attention, (q, k, v, rel_emb), eps=1e-6, atol=1e-6)


def test_blocked_dropout_is_unbiased_and_reproducible():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 4, dtype=torch.float64) for _ in range(3))
    rel_emb = torch.randn(2, 6, 4, dtype=torch.float64)
    clean = blocked_causal_relative_attention(q, k, v, rel_emb, scale=0.5, block_size=4)
    torch.manual_seed(7)
    first = blocked_causal_relative_attention(q, k, v, rel_emb, scale=0.5, dropout_p=0.4, block_size=4)
    torch.manual_seed(7)
    again = blocked_causal_relative_attention(q, k, v, rel_emb, scale=0.5, dropout_p=0.4, block_size=4)
    assert torch.equal(first, again) and _max_err(first, clean) > 1e-3
    # 4,000 draws in one call: the mask is drawn element by element, so each copy of the batch is one draw
    many = (t.expand(4000, -1, -1, -1) for t in (q, k, v))
    mean = blocked_causal_relative_attention(*many, rel_emb, scale=0.5, dropout_p=0.4, block_size=4).mean(0, True)
    assert _max_err(mean, clean) < 0.1 * clean.abs().max().item()  # E[dropout(P)] V = P V


def test_model_logits_and_gradients_agree_across_backends():
    torch.manual_seed(0)
    tokens = torch.randint(0, 40, (2, 21))
    results = {}
    for backend in ("sdpa", "blocked"):
        torch.manual_seed(1)
        model = MusicTransformer(tiny_config(attention_backend=backend))
        model.eval()
        logits, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        results[backend] = (logits.detach(), {n: p.grad for n, p in model.named_parameters()})
    (sdpa_logits, sdpa_grads), (blocked_logits, blocked_grads) = results["sdpa"], results["blocked"]
    assert _max_err(sdpa_logits, blocked_logits) <= TOL
    for name, grad in sdpa_grads.items():
        assert _max_err(grad, blocked_grads[name]) <= TOL, name


def test_auto_backend_takes_the_kernel_for_whole_sequences_and_sdpa_for_decoding():
    mha = MultiHeadAttention(16, 2, position="relative")
    q_full, q_one = torch.randn(1, 2, 10, 8), torch.randn(1, 2, 1, 8)
    assert mha.resolve_backend(q_full, q_full, 0, None) == "blocked"
    assert mha.resolve_backend(q_one, q_full, 9, None) == "sdpa"  # one cached step: a row, no skew
    assert mha.resolve_backend(q_full, q_full, 0, torch.zeros(1, 10, dtype=torch.bool)) == "sdpa"
    for position in ("rope", "alibi", "none"):
        other = MultiHeadAttention(16, 2, position=position)
        assert other.resolve_backend(q_full, q_full, 0, None) == "sdpa"
    assert MultiHeadAttention(16, 2, position="relative", causal=False).resolve_backend(
        q_full, q_full, 0, None) == "sdpa"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        MultiHeadAttention(16, 2, backend="triton")
    with pytest.raises(ConfigError, match="attention_backend must be one of"):
        ModelConfig(vocab_size=10, attention_backend="fast")


@pytest.mark.parametrize("max_distance", [3, 30])  # decoding past the clipping distance, and within it
def test_one_token_decoding_matches_full_forward(max_distance):
    mha = MultiHeadAttention(24, 3, position="relative", max_relative_distance=max_distance).eval()
    x = torch.randn(2, 12, 24)
    cache = KVCache(2, 3, 16, 8)
    steps = [mha(x[:, :1], kv_cache=cache, start_pos=0)]
    steps += [mha(x[:, i:i + 1], kv_cache=cache, start_pos=i) for i in range(1, 12)]
    assert _max_err(torch.cat(steps, dim=1), naive_attention(mha, x)) <= TOL


def test_blocked_backend_under_bf16_autocast_matches_sdpa():
    tokens = torch.randint(0, 61, (2, 40))
    losses, grads = {}, {}
    for backend in ("sdpa", "blocked"):
        torch.manual_seed(0)
        model = MusicTransformer(tiny_config(attention_backend=backend))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        losses[backend] = loss.item()
        grads[backend] = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert abs(losses["sdpa"] - losses["blocked"]) < 1e-2
    assert torch.nn.functional.cosine_similarity(grads["sdpa"], grads["blocked"], dim=0) > 0.999


def test_auto_backend_is_blocked_on_the_cpu_and_sdpa_on_cuda():
    from musicmha.nn.attention import auto_backend

    # CUDA: SDPA's memory-efficient kernel returns the bias gradient fused (unmeasured: no GPU yet)
    assert auto_backend("cpu") == "blocked" and auto_backend("cuda") == "sdpa"


def test_flex_refuses_attention_dropout_in_one_line():
    mha = MultiHeadAttention(24, 3, position="relative", max_relative_distance=5, backend="flex", dropout=0.1)
    with pytest.raises(ValueError, match="^attention_backend 'flex' has no attention dropout") as error:
        mha(torch.randn(1, 9, 24))
    assert "\n" not in str(error.value)
