"""torch.compile on the CPU: the blocked relative kernel and the SDPA path of every position mode trace as one
graph, `train --compile` follows eager's loss trajectory, and the compiled FlexAttention does not recompile
per (batch, length)."""

import pytest
import torch
import torch._dynamo
from conftest import POSITIONS, tiny_config
from reference import naive_attention

from musicmha import MultiHeadAttention, MusicTransformer
from musicmha.nn import relative_kernel


def _graph_breaks(model: MusicTransformer, tokens: torch.Tensor) -> int:
    torch._dynamo.reset()

    def loss(inputs, targets):
        return model(inputs, targets)[1]

    return torch._dynamo.explain(loss)(tokens[:, :-1], tokens[:, 1:]).graph_break_count


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_the_blocked_kernel_compiles_without_graph_breaks(dropout):
    # Before: 7 breaks in a 2-layer model (the skew's storage_offset(), the lru_cache'd mask, ctx lists).
    model = MusicTransformer(tiny_config(attention_backend="blocked", dropout=dropout)).train()
    assert _graph_breaks(model, torch.randint(0, 61, (2, 41))) == 0


@pytest.mark.parametrize("position", POSITIONS)
def test_the_sdpa_path_compiles_without_graph_breaks(position):
    """Training (with attention dropout), prefill into a KV cache and decoding one token, on the "sdpa" backend
    (the relative term materialized as a bias; decoding takes it for every backend). The relative mode broke
    7 times in a 2-layer model here before cec9536, all at `y.storage_offset()` in relative_logits (a torch
    call returning a non-tensor); the skew without it, now shared with the blocked kernel, fixed both."""
    torch.manual_seed(0)
    model = MusicTransformer(tiny_config(position, attention_backend="sdpa", dropout=0.1)).train()
    tokens = torch.randint(0, 61, (2, 41))
    breaks = {"training": _graph_breaks(model, tokens)}
    model.eval()
    cache = model.new_kv_cache(2, 96)

    def explain(start_pos: int, length: int) -> int:
        torch._dynamo.reset()
        with torch.no_grad():
            return torch._dynamo.explain(lambda t: model(t, kv_cache=cache, start_pos=start_pos)[0])(
                tokens[:, start_pos:start_pos + length]).graph_break_count

    breaks["prefill"] = explain(0, 30)
    breaks["decode near"] = explain(20, 1)  # relative: the table's first rows, read backwards
    breaks["decode far"] = explain(30, 1)  # past max_relative_distance=24: the clipped gather
    assert breaks == dict.fromkeys(breaks, 0), breaks


@pytest.mark.slow
def test_compiled_training_follows_the_eager_loss_trajectory(real_tokens, tmp_path, monkeypatch):
    """A few steps of `musicmha train --compile` (inductor) against eager: same losses within float noise."""
    import musicmha.training.loop as loop_module
    import musicmha.training.train as train_module
    from musicmha.training.config import TrainConfig

    losses: list[float] = []
    original = loop_module.checked_step_loss

    def recording(*args, **kwargs):
        losses.append(original(*args, **kwargs))
        return losses[-1]

    monkeypatch.setattr(loop_module, "checked_step_loss", recording)
    runs = {}
    for compiled in (False, True):
        losses.clear()
        torch._dynamo.reset()
        train_module.train(TrainConfig.from_sources(
            data=str(real_tokens), out=str(tmp_path / f"compile-{compiled}"), preset="tiny", d_model=32,
            n_layers=1, max_seq_len=64, batch_size=4, max_steps=6, warmup_steps=2, eval_every=100, eval_batches=1,
            save_every=100, dropout=0.0, grad_accum=2, compile=compiled))  # one block: every op, less to compile
        runs[compiled] = list(losses)
    assert len(runs[True]) == len(runs[False]) == 6
    assert runs[False][-1] < runs[False][0]  # it trains
    assert max(abs(a - b) for a, b in zip(runs[False], runs[True])) < 2e-3, runs


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_compiled_flex_does_not_recompile_for_every_shape(monkeypatch):
    """dynamic=False compiled once per (batch, length) until dynamo's limit, then silently ran eager flex.
    Now the first change of shape compiles a symbolic graph and later shapes reuse it. Counted with dynamo's
    "eager" backend (the recompilation policy is dynamo's, whatever the backend; inductor on 2 CPU cores
    takes a minute per graph); the CPU has FlexAttention's forward only."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    monkeypatch.setattr(relative_kernel, "FLEX_COMPILE_BACKEND", "eager")
    relative_kernel._compiled_flex_attention.cache_clear()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    mha = MultiHeadAttention(24, 3, position="relative", max_relative_distance=20, backend="flex").eval()
    graphs = []
    for shapes in ([(2, 40), (2, 72), (1, 56), (3, 130), (2, 200)], [(2, 90), (3, 150), (4, 260), (1, 33)]):
        for batch, length in shapes:
            x = torch.randn(batch, length, 24)
            with torch.no_grad():
                q, k, v = (mha._split_heads(proj(x)) for proj in (mha.q_proj, mha.k_proj, mha.v_proj))
                out = relative_kernel.flex_causal_relative_attention(q, k, v, mha.scheme.relative_embeddings,
                                                                     scale=mha.head_dim**-0.5, compiled=True)
                out = mha.out_proj(out.transpose(1, 2).reshape(batch, length, 24))
                assert (out - naive_attention(mha, x)).abs().max() < 1e-4
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    # measured: 4 graphs for the first five shapes (static, symbolic length, batch 1, symbolic batch), then
    # none for four new ones; dynamic=False made 9, one per shape (measured)
    assert graphs[0] <= 4 and graphs[1] == graphs[0], graphs
    relative_kernel._compiled_flex_attention.cache_clear()
