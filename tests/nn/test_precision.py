"""Reduced precision and memory: position constants stay float32 in a bf16 model, the blocked relative
kernel keeps no probabilities when nothing needs a gradient, and its bf16 backward accumulates in fp32."""

import subprocess
import sys
import textwrap

import pytest
import torch

from musicmha import ModelConfig, MusicTransformer
from musicmha.nn.relative_kernel import blocked_causal_relative_attention

CONTEXT = 2048


def _sharp_model(position: str) -> MusicTransformer:
    """2 layers, 6 heads, a 2,048 context, with attention as sharp as a trained model's: at init the logits
    are too flat for positions to matter, and a position error would not show in the output."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=61, d_model=48, n_layers=2, n_heads=6, max_seq_len=CONTEXT,
                         position=position, dropout=0.0, max_relative_distance=64)
    model = MusicTransformer(config).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.q_proj.weight.mul_(30)
            block.attn.k_proj.weight.mul_(30)
            block.attn.out_proj.weight.mul_(10)
    return model


def _fp32_and_bf16(position: str, tmp_path) -> tuple[MusicTransformer, MusicTransformer]:
    _sharp_model(position).save_pretrained(tmp_path)
    return (MusicTransformer.from_pretrained(tmp_path),
            MusicTransformer.from_pretrained(tmp_path, dtype=torch.bfloat16))


@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_position_constants_stay_float32_in_a_bf16_model(position, tmp_path):
    fp32, bf16 = _fp32_and_bf16(position, tmp_path)
    converted = [bf16, _sharp_model(position).to(torch.bfloat16), _sharp_model(position).half()]
    reference = fp32.blocks[0].attn
    q32 = torch.randn(1, 6, CONTEXT, 8)
    for model in converted:
        attn = model.blocks[0].attn
        assert attn.q_proj.weight.dtype != torch.float32  # the conversion did happen
        if position == "rope":
            assert attn.scheme.inv_freq.dtype == torch.float32
            assert torch.equal(attn.scheme.inv_freq, reference.scheme.inv_freq)
            for ours, theirs in zip(attn.scheme.tables(CONTEXT, q32.device),
                                    reference.scheme.tables(CONTEXT, q32.device)):
                assert torch.equal(ours[:CONTEXT], theirs[:CONTEXT])
        else:
            assert attn.scheme.slopes.dtype == torch.float32
            assert torch.equal(attn.scheme.slopes, reference.scheme.slopes)
            q = q32.to(attn.q_proj.weight.dtype)
            # the bias the bf16 model adds is the fp32 one rounded once, up to distance 2,047
            expected = reference._logit_bias(q32, CONTEXT, 0, None).to(q.dtype)
            assert torch.equal(attn._logit_bias(q, CONTEXT, 0, None), expected)


def _late_over_early_error(position: str, tmp_path) -> float:
    fp32, bf16 = _fp32_and_bf16(position, tmp_path)
    tokens = torch.randint(0, 61, (1, CONTEXT))
    with torch.no_grad():
        error = (fp32(tokens)[0] - bf16(tokens)[0].float()).abs()[0].amax(-1)  # (L,) worst logit per position
    return (error[-100:].mean() / error[:100].mean()).item()


def test_bf16_logit_error_does_not_grow_with_position_under_rope(tmp_path):
    """bf16 vs fp32 logits, worst error per position, last 100 positions over first 100: measured 1.45 for
    the relative model (no position constants) and 1.78 for RoPE; 8.8 for RoPE when `.to(bfloat16)`
    converted its frequencies."""
    relative = _late_over_early_error("relative", tmp_path / "relative")
    rope = _late_over_early_error("rope", tmp_path / "rope")
    assert rope <= 2.0 * max(1.0, relative), (rope, relative)


NO_GRAD_PEAK = textwrap.dedent("""
    import sys, torch, torch.nn.functional as F
    from musicmha.nn.relative_kernel import blocked_causal_relative_attention
    torch.set_num_threads(2)
    q, k, v = (torch.randn(1, 8, 4096, 64) for _ in range(3))
    rel_emb = torch.randn(8, 4096, 64)
    attention = {"blocked": lambda: blocked_causal_relative_attention(q, k, v, rel_emb, scale=0.125),
                 "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)}[sys.argv[1]]

    def high_water_mark():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

    with torch.no_grad():
        attention()  # warm-up: thread pools and allocator caches are not the kernel's
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # the high-water mark starts again from the current resident size
        before = high_water_mark()
        attention()
    print(high_water_mark() - before)
""")


def _no_grad_peak(which: str) -> int:
    result = subprocess.run([sys.executable, "-c", NO_GRAD_PEAK, which], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_no_grad_relative_forward_at_4096_keeps_no_probabilities():
    """Growth of the peak resident memory over one no-grad forward, B=1, H=8, D=64: measured 11 MB for the
    blocked kernel and 9 MB for SDPA's fused causal kernel (no position term at all); 280-390 MB when the
    kernel kept every block's probabilities (B·H·L²/2 floats, 256 MiB) with nothing to backpropagate."""
    blocked, sdpa = _no_grad_peak("blocked"), _no_grad_peak("sdpa")
    assert blocked <= 3 * max(sdpa, 2**20), (blocked, sdpa)


@pytest.mark.parametrize("shape, block_size, one_chunk", [((2, 3, 70, 8), 32, True),
                                                         ((2, 8, 1100, 16), 128, False)])  # 6 heads a chunk
def test_the_no_grad_path_gives_the_forward_of_the_gradient_path(shape, block_size, one_chunk, monkeypatch):
    q, k, v = (torch.randn(shape) for _ in range(3))
    rel_emb = torch.randn(shape[1], 40, shape[3])
    with_grad = blocked_causal_relative_attention(q, k, v, rel_emb.requires_grad_(), scale=0.3,
                                                  block_size=block_size)
    rel_emb.requires_grad_(False)
    from musicmha.nn import relative_kernel

    def refuse(*args):
        raise AssertionError("the autograd function (which keeps the probabilities) ran without a gradient")

    monkeypatch.setattr(relative_kernel._BlockedCausalRelative, "apply", refuse)
    outputs = [blocked_causal_relative_attention(q, k, v, rel_emb, scale=0.3, block_size=block_size)]
    with torch.no_grad():
        outputs.append(blocked_causal_relative_attention(q, k, v, rel_emb, scale=0.3, block_size=block_size))
    with torch.inference_mode():
        outputs.append(blocked_causal_relative_attention(q, k, v, rel_emb, scale=0.3, block_size=block_size))
    for out in outputs:
        if one_chunk:
            assert torch.equal(out, with_grad.detach())
        else:  # a few heads per matmul: BLAS may sum in another order
            torch.testing.assert_close(out, with_grad.detach(), rtol=0, atol=1e-5)


def _relative_gradient_errors(attention, inputs, weight, reference) -> list[float]:
    leaves = [t.detach().to(torch.bfloat16).requires_grad_() for t in inputs]
    (attention(*leaves).double() * weight).sum().backward()
    return [((leaf.grad.double() - ref).norm() / ref.norm()).item() for leaf, ref in zip(leaves, reference)]


def test_bf16_gradients_of_the_blocked_kernel_are_as_accurate_as_sdpa():
    """bf16 q, k, v and table; gradients against fp64 ones (the fp64 kernel agrees with tests/reference.py
    and gradcheck, see test_relative_kernel). Relative errors measured for (dQ, dK, dV, dE): SDPA 0.45%,
    0.41%, 0.32%, 0.50%; blocked 0.44%, 0.44%, 0.35%, 0.43%; blocked with bf16 logits and a bf16
    backward 0.74%, 0.83%, 0.67%, 0.83%."""
    from musicmha import MultiHeadAttention

    torch.manual_seed(0)
    batch, heads, length, dim = 2, 4, 256, 32
    inputs = [torch.randn(batch, heads, length, dim, dtype=torch.float64) for _ in range(3)]
    inputs.append(torch.randn(heads, length, dim, dtype=torch.float64) * dim**-0.5)
    weight = torch.randn(batch, heads, length, dim, dtype=torch.float64)
    mha = MultiHeadAttention(heads * dim, heads, position="relative", max_relative_distance=length - 1,
                             backend="sdpa")
    del mha.scheme.relative_embeddings  # the table becomes an input, as for the kernel

    def sdpa(q, k, v, rel_emb):
        mha.scheme.__dict__["relative_embeddings"] = rel_emb
        return mha.attend(q, k, v)

    def blocked(q, k, v, rel_emb):
        return blocked_causal_relative_attention(q, k, v, rel_emb, scale=dim**-0.5, block_size=32)

    exact = [t.clone().requires_grad_() for t in inputs]
    (blocked(*exact) * weight).sum().backward()
    reference = [t.grad for t in exact]
    sdpa_errors = _relative_gradient_errors(sdpa, inputs, weight, reference)
    blocked_errors = _relative_gradient_errors(blocked, inputs, weight, reference)
    for name, ours, theirs in zip("QKVE", blocked_errors, sdpa_errors):
        assert ours <= 1.25 * theirs, (name, blocked_errors, sdpa_errors)
