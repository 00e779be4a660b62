"""Relative attention never builds the L x L x D tensor: at L=4096, D_head=256 that alone is 16 GiB."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import resource, torch
    from musicmha import MultiHeadAttention
    torch.set_num_threads(2)
    mha = MultiHeadAttention(256, 1, position="relative", max_relative_distance=4095)
    x = torch.randn(1, 4096, 256, requires_grad=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mha(x).square().mean().backward()
    grad = mha.scheme.relative_embeddings.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    print(before * 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""")


@pytest.mark.slow
def test_relative_attention_at_4096_tokens_stays_under_3_gib():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    before, peak = map(int, result.stdout.split())
    naive_tensor = 4096 * 4096 * 256 * 4
    assert peak < 3 * 2**30, f"peak RSS {peak / 2**30:.2f} GiB"
    assert peak - before < naive_tensor / 8
