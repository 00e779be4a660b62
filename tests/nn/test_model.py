"""MusicTransformer: causality, cached decoding vs. the full forward, loss, and generation options."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import POSITIONS, tiny_config

from musicmha import MusicTransformer
from musicmha.generation.options import SamplingOptions
from musicmha.generation.sampling import decode_one, generate, prefill


@pytest.mark.parametrize("position", POSITIONS)
def test_logits_never_depend_on_later_tokens(position):
    model = MusicTransformer(tiny_config(position)).eval()
    tokens = torch.randint(0, 61, (2, 40))
    changed = tokens.clone()
    changed[:, 25:] = torch.randint(0, 61, (2, 15))
    a, _ = model(tokens)
    b, _ = model(changed)
    assert (a[:, :25] - b[:, :25]).abs().max() <= 1e-5
    assert (a[:, 25:] - b[:, 25:]).abs().max() > 1e-4


@pytest.mark.parametrize("position", POSITIONS)
def test_cached_greedy_decoding_equals_full_forward(position):
    """64 greedy tokens decoded with the KV cache equal those of re-running the whole forward each step,
    and the cached logits agree with the full forward's within 1e-5 at every step."""
    model = MusicTransformer(tiny_config(position)).eval()
    prompt = torch.randint(0, 61, (2, 9))
    cache = model.new_kv_cache(2)
    with torch.no_grad():
        seq = prompt
        logits = prefill(model, seq, cache)
        for _ in range(64):
            full_logits, _ = model(seq)
            assert (logits - full_logits[:, -1]).abs().max() <= 1e-5
            assert torch.equal(logits.argmax(-1), full_logits[:, -1].argmax(-1))
            next_token = logits.argmax(-1)
            seq = torch.cat([seq, next_token[:, None]], dim=1)
            logits = decode_one(model, next_token, seq.shape[1] - 1, cache)
    cached = generate(model, prompt, SamplingOptions(top_k=1), 64)
    recomputed = generate(model, prompt, SamplingOptions(top_k=1), 64, use_cache=False)
    assert torch.equal(cached, seq) and torch.equal(recomputed, seq)


@pytest.mark.parametrize("position", POSITIONS)
def test_generation_runs_past_the_context_window(position):
    model = MusicTransformer(tiny_config(position, max_seq_len=32)).eval()
    prompt = torch.randint(0, 61, (1, 40))  # already longer than the context
    out = generate(model, prompt, SamplingOptions(top_k=1), 70)
    assert out.shape == (1, 110) and torch.equal(out[:, :40], prompt)
    assert torch.equal(out, generate(model, prompt, SamplingOptions(top_k=1), 70, use_cache=False))


def test_loss_is_the_mean_cross_entropy_with_ignored_targets():
    model = MusicTransformer(tiny_config()).eval()
    tokens = torch.randint(0, 61, (2, 12))
    targets = torch.randint(0, 61, (2, 12))
    targets[0, :4] = -100
    logits, loss = model(tokens, targets)
    log_probs = torch.log_softmax(logits, dim=-1)
    picked = [-log_probs[b, t, targets[b, t]] for b in range(2) for t in range(12) if targets[b, t] >= 0]
    assert math.isclose(loss.item(), torch.stack(picked).mean().item(), rel_tol=1e-5)
    assert math.isclose(loss.item(), F.cross_entropy(logits[targets >= 0], targets[targets >= 0]).item(),
                        rel_tol=1e-5)


def test_output_head_is_tied_to_the_embedding_and_all_parameters_train():
    model = MusicTransformer(tiny_config())
    assert model.lm_head.weight is model.token_embedding.weight
    tokens = torch.randint(0, 61, (2, 30))
    _, loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert silent == []


def test_the_tie_survives_a_trip_through_the_meta_device():
    """FSDP2's memory-saving load moves the model to the meta device and back (accelerate's
    cpu_ram_efficient_loading); a move to meta makes one new Parameter per module, which unties them."""
    model = MusicTransformer(tiny_config()).to("meta")
    assert model.lm_head.weight is model.token_embedding.weight
    model.to_empty(device="cpu")
    assert model.lm_head.weight is model.token_embedding.weight
    assert len(list(model.parameters())) == len(list(MusicTransformer(tiny_config()).parameters()))
    plain = torch.nn.Module._apply  # without the model's own _apply, the same trip unties them
    untied = MusicTransformer(tiny_config())
    plain(untied, lambda t: t.to("meta"))
    assert untied.lm_head.weight is not untied.token_embedding.weight
    untied.tie_weights()
    assert untied.lm_head.weight is untied.token_embedding.weight


def test_absolute_positions_stop_at_max_seq_len_but_relative_ones_do_not():
    with pytest.raises(ValueError, match="max_seq_len"):
        MusicTransformer(tiny_config("none", max_seq_len=16))(torch.zeros(1, 17, dtype=torch.long))
    for position in ("relative", "rope", "alibi"):
        logits, _ = MusicTransformer(tiny_config(position, max_seq_len=16))(torch.zeros(1, 33, dtype=torch.long))
        assert torch.isfinite(logits).all()
