"""Position schemes: one interface the attention and the model ask, one skew, and checkpoints that keep their keys."""

from pathlib import Path

import pytest
import torch
from conftest import POSITIONS, tiny_config
from reference import naive_attention

from musicmha import MultiHeadAttention, MusicTransformer
from musicmha.nn import relative_kernel, skew
from musicmha.nn.config import POSITION_MODES
from musicmha.nn.positions import POSITION_SCHEMES, PositionScheme, build_position_scheme, position_scheme_type

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "musicmha-small"


@pytest.mark.parametrize("position", POSITIONS)
def test_each_name_builds_its_scheme_and_the_model_follows_its_capabilities(position):
    scheme = build_position_scheme(position, n_heads=4, head_dim=8)
    assert isinstance(scheme, PositionScheme) and type(scheme) is position_scheme_type(position)
    assert scheme.name == position
    model = MusicTransformer(tiny_config(position, max_seq_len=16))
    assert hasattr(model, "position_embedding") == scheme.absolute_table
    assert type(model.blocks[0].attn.scheme) is type(scheme)
    tokens = torch.zeros(1, 20, dtype=torch.long)
    if scheme.extrapolates:
        assert torch.isfinite(model(tokens)[0]).all()
    else:
        with pytest.raises(ValueError, match="max_seq_len"):
            model(tokens)


def test_only_relative_has_a_kernel_and_only_alibi_a_constant_bias():
    kinds = {name: position_scheme_type(name) for name in POSITIONS}
    assert [n for n, k in kinds.items() if k.has_fast_kernel] == ["relative"]
    assert [n for n, k in kinds.items() if k.constant_bias] == ["alibi"]
    assert [n for n, k in kinds.items() if not k.extrapolates] == ["none"]
    with pytest.raises(ValueError, match="relative, rope, alibi, none"):
        position_scheme_type("sinusoidal")
    with pytest.raises(NotImplementedError):
        build_position_scheme("rope", n_heads=2, head_dim=8).fast_attention(
            *torch.randn(3, 1, 2, 4, 8), backend="blocked", scale=1.0, dropout_p=0.0, block_size=2)


class _DiagonalOnly(PositionScheme):
    """A scheme the attention has never heard of: every query may only see its own key."""

    name = "diagonal"

    def logit_bias(self, q, *, n_keys, first_query_pos):
        query_pos = torch.arange(q.shape[2])[:, None] + first_query_pos
        return torch.where(query_pos == torch.arange(n_keys), 0.0, float("-inf"))[None, None]


def test_the_attention_asks_the_scheme_and_nothing_else():
    """Swapping in a new scheme changes what the attention computes, with no change to the attention."""
    mha = MultiHeadAttention(16, 2, position="none").eval()
    mha.scheme = _DiagonalOnly()
    x = torch.randn(2, 7, 16)
    assert torch.allclose(mha(x), mha.out_proj(mha.v_proj(x)), atol=1e-6)


@pytest.mark.parametrize("rows,n_keys,width", [(3, 5, 8), (4, 4, 5), (1, 6, 7), (5, 2, 7)])
def test_unskew_is_the_adjoint_of_skew_and_skew_reads_row_r_shifted_left_by_r(rows, n_keys, width):
    buffer = torch.randn(2, 3, rows, width)
    viewed = skew.skew(buffer, n_keys)
    flat = buffer.flatten(-2)  # where a row's read runs past its last column, it goes on into the next row
    for r in range(rows):
        start = r * width + rows - 1 - r
        assert torch.equal(viewed[:, :, r], flat[..., start:start + n_keys])
        if width >= n_keys + rows - 1:
            assert torch.equal(viewed[:, :, r], buffer[:, :, r, rows - 1 - r:rows - 1 - r + n_keys])
    grad = torch.randn(2, 3, rows, n_keys)
    back = skew.unskew(grad, width)
    assert torch.allclose((viewed * grad).sum(), (buffer * back).sum(), atol=1e-5)
    assert torch.equal(skew.skew(back, n_keys), grad)
    assert back.abs().sum() == pytest.approx(grad.abs().sum().item(), rel=1e-6)  # zero everywhere else


def test_the_kernel_and_the_sdpa_path_share_one_skew():
    assert relative_kernel.skew is skew.skew and relative_kernel.unskew is skew.unskew
    source = Path(relative_kernel.__file__).read_text() + Path(skew.__file__).read_text()
    assert source.count("as_strided(") == 1  # the view is written once


def test_relative_logits_equal_the_explicit_sum_with_gradients():
    """The skewed term against S[i, j] = q_i · E[clip(i + p - j)], and its gradients through `unskew`."""
    q = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    table = torch.randn(3, 4, 4, dtype=torch.float64, requires_grad=True)
    distance = (torch.arange(5)[:, None] + 6 - torch.arange(11)).clamp(0, 3)
    explicit = torch.einsum("bhid,hijd->bhij", q, table[:, distance]) * 0.5
    ours = skew.relative_logits(q, table, n_keys=11, first_query_pos=6, causal=True, scale=0.5)
    visible = distance.new_ones(5, 11, dtype=torch.bool).tril(6)
    assert torch.allclose(ours[..., visible], explicit[..., visible])
    weight = torch.randn_like(explicit) * visible
    grads = torch.autograd.grad((ours * weight).sum(), (q, table))
    for ours_grad, theirs in zip(grads, torch.autograd.grad((explicit * weight).sum(), (q, table))):
        assert torch.allclose(ours_grad, theirs)


def test_the_relative_table_is_saved_under_its_path_and_old_flat_keys_still_load():
    mha = MultiHeadAttention(16, 2, position="relative", max_relative_distance=6)
    state = mha.state_dict()
    assert list(state) == ["q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight",
                           "v_proj.bias", "out_proj.weight", "out_proj.bias", "scheme.relative_embeddings"]
    assert all(mha.get_parameter(key) is not None for key in state)  # every key is a real path (FSDP2 walks it)
    other = MultiHeadAttention(16, 2, position="relative", max_relative_distance=6)
    other.load_state_dict(state, strict=True)
    assert torch.equal(other.scheme.relative_embeddings, mha.scheme.relative_embeddings)
    # a checkpoint written before the schemes were modules keeps the table under the attention's own prefix
    model = MusicTransformer(tiny_config())
    old = {key.replace("attn.scheme.", "attn."): value for key, value in model.state_dict().items()}
    assert "blocks.1.attn.relative_embeddings" in old
    fresh = MusicTransformer(tiny_config())
    fresh.load_state_dict(old, strict=True)
    assert torch.equal(fresh.blocks[1].attn.scheme.relative_embeddings, model.blocks[1].attn.scheme.relative_embeddings)
    missing = {k: v for k, v in old.items() if not k.endswith("relative_embeddings")}
    with pytest.raises(RuntimeError, match="relative_embeddings"):
        MusicTransformer(tiny_config()).load_state_dict(missing, strict=True)


@pytest.mark.slow
def test_shipped_checkpoint_loads_its_keys_and_gives_the_logits_it_always_gave():
    """The loss and logits were recorded before the position schemes became modules; the logits also match
    a forward built from tests/reference.py's per-head loops."""
    from safetensors import safe_open

    model = MusicTransformer.from_pretrained(CHECKPOINT)
    with safe_open(str(CHECKPOINT / "model.safetensors"), "pt") as stored:
        old_keys = set(stored.keys())
    assert "blocks.0.attn.relative_embeddings" in old_keys  # written before the schemes were modules
    stored_keys = {key.replace(".attn.relative", ".attn.scheme.relative") for key in old_keys}
    tied = {"lm_head.weight", "token_embedding.weight"}  # one matrix, stored under one of its names
    assert stored_keys | tied == set(model.state_dict()) and len(stored_keys & tied) == 1
    tokens = (torch.arange(97) * 37 + 11) % 530
    with torch.no_grad():
        logits, loss = model(tokens[None, :-1], tokens[None, 1:])
        assert loss.item() == pytest.approx(9.838105201721191, rel=1e-5)
        expected = [-4.25295877456665, -4.420822620391846, -2.9028513431549072, -2.6320345401763916,
                    -3.9981300830841064]
        assert torch.allclose(logits[0, -1, :5], torch.tensor(expected), atol=1e-4)
        short = tokens[None, :24]
        x = model.token_embedding(short)
        for block in model.blocks:
            x = x + naive_attention(block.attn, block.norm1(x))
            x = x + block.mlp(block.norm2(x))
        assert torch.allclose(model(short)[0], model.lm_head(model.final_norm(x)), atol=1e-4)


def test_the_config_accepts_exactly_the_schemes_there_are():
    """config.py validates names without importing torch, so its list is a copy: it must stay the same."""
    assert POSITION_MODES == tuple(POSITION_SCHEMES) and sorted(POSITIONS) == sorted(POSITION_SCHEMES)
