"""The sampler: greedy, reproducibility, top-k/top-p support, allowed masks, callbacks, EOS."""

import pytest
import torch
from conftest import tiny_config

from musicmha import MusicTransformer
from musicmha.generation.options import SamplingOptions
from musicmha.generation.sampling import generate, sample_from_logits

GREEDY = SamplingOptions(top_k=1)


@pytest.fixture
def model():
    return MusicTransformer(tiny_config()).eval()


def test_greedy_is_top_k_one_and_temperature_zero(model):
    prompt = torch.randint(0, 61, (10,))
    greedy = generate(model, prompt, GREEDY, 20)
    assert greedy.shape == (30,) and torch.equal(greedy[:10], prompt)
    assert torch.equal(greedy, generate(model, prompt, SamplingOptions(temperature=0), 20))
    seq = prompt[None]
    for _ in range(20):  # greedy by hand with the plain forward
        seq = torch.cat([seq, model(seq)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, seq[0])


def test_an_rng_or_a_seed_makes_sampling_reproducible(model):
    prompt = torch.randint(0, 61, (2, 5))
    runs = [generate(model, prompt, SamplingOptions(), 30, rng=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    seeded = [generate(model, prompt, SamplingOptions(seed=s), 30) for s in (7, 7, 8)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], seeded[2])
    # row k of a seeded batch is row 0 of a batch seeded seed + k
    assert torch.equal(generate(model, prompt[1:], SamplingOptions(seed=8), 30)[0], seeded[0][1])


def test_top_k_and_top_p_keep_only_their_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    rng = torch.Generator().manual_seed(0)
    assert set(sample_from_logits(logits, SamplingOptions(top_k=2), rng=rng).tolist()) == {0, 1}
    # nucleus 0.6: 0.5 alone is not enough, 0.5 + 0.3 is: tokens {0, 1}
    assert set(sample_from_logits(logits, SamplingOptions(top_p=0.6), rng=rng).tolist()) == {0, 1}
    assert set(sample_from_logits(logits, SamplingOptions(top_p=0.4), rng=rng).tolist()) == {0}
    counts = torch.bincount(sample_from_logits(logits, rng=rng), minlength=4) / 2000
    assert (counts - torch.tensor([0.5, 0.3, 0.15, 0.05])).abs().max() < 0.04


def test_allowed_mask_is_respected_and_callback_streams_every_token(model):
    seen = []

    def allowed(seq):  # only even tokens, and never the token just emitted
        mask = torch.zeros(seq.shape[0], 61, dtype=torch.bool)
        mask[:, 0::2] = True
        mask[torch.arange(seq.shape[0]), seq[:, -1]] = False
        return mask

    out = generate(model, torch.tensor([[1, 2, 3]]), SamplingOptions(seed=1), 25, allowed=allowed,
                   callback=lambda step, tok: seen.append((step, tok.clone())))
    new = out[0, 3:]
    assert (new % 2 == 0).all() and (new[1:] != new[:-1]).all()
    assert [s for s, _ in seen] == list(range(25))
    assert torch.equal(torch.cat([t for _, t in seen]), new)


def test_generation_stops_when_every_row_emitted_eos(model):
    def eos_after_three(seq):
        mask = torch.ones(seq.shape[0], 61, dtype=torch.bool)
        if seq.shape[1] >= 6:
            mask[:] = False
            mask[:, 0] = True
        return mask

    out = generate(model, torch.tensor([[5, 6, 7], [8, 9, 10]]), SamplingOptions(), 50, allowed=eos_after_three,
                   eos_token_id=0)
    assert out.shape == (2, 7) and (out[:, 6] == 0).all()


def test_bad_sampling_arguments_are_refused(model):
    with pytest.raises(ValueError, match="non-empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), SamplingOptions(), 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, torch.tensor([1, 2]), SamplingOptions(), -1)
    with pytest.raises(TypeError, match="SamplingOptions"):
        generate(model, torch.tensor([1, 2]), {"temperature": 1.0}, 3)  # type: ignore[arg-type]


class _ElsewhereRng:
    """Stands for a torch.Generator on another device than the logits (a CPU one with a CUDA model), which a
    CPU-only machine cannot create: it reports the meta device, where a tensor can be moved but not read."""

    device = torch.device("meta")


def test_sampling_draws_on_the_rngs_device(monkeypatch):
    """What the CPU can show: the draw is routed through the rng's device and comes back on the
    logits' device. `torch.multinomial` is replaced by a stand-in that refuses mismatched devices, as the
    CUDA kernel does; the real cross-device draw is the CUDA test below."""
    calls = []

    def multinomial(probs, n, *, generator=None):
        if generator is not None and probs.device != generator.device:
            raise RuntimeError("Expected a generator on the device of the probabilities")
        calls.append(probs.device)
        return torch.zeros(probs.shape[0], n, dtype=torch.long)  # what the generator's device returns

    monkeypatch.setattr(torch, "multinomial", multinomial)
    tokens = sample_from_logits(torch.randn(3, 61), rng=_ElsewhereRng())  # type: ignore[arg-type]
    assert calls == [torch.device("meta")] and tokens.device == torch.device("cpu") and tokens.shape == (3,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_rng_samples_a_cuda_model_as_on_the_cpu():
    logits = torch.randn(4, 61)
    on_cpu = sample_from_logits(logits, rng=torch.Generator().manual_seed(3))
    on_cuda = sample_from_logits(logits.cuda(), rng=torch.Generator().manual_seed(3))
    assert on_cuda.is_cuda and torch.equal(on_cuda.cpu(), on_cpu)
    model = MusicTransformer(tiny_config()).eval().cuda()
    out = generate(model, torch.tensor([1, 2, 3]), SamplingOptions(), 20, rng=torch.Generator().manual_seed(3))
    assert out.is_cuda and out.shape == (23,)


@pytest.mark.parametrize("boost", [1.0, 3.0])
def test_the_copy_head_in_generation_equals_the_whole_window_mixture(model, boost):
    # Reference: at every step, the whole sequence through the model and the window mixture
    # (copy_distribution over all of it, no incremental state) with the weights' odds times the sampling
    # boost, computed here by hand, then the same draw from a generator.
    from musicmha.generation.copy_head import CopyHead

    head = CopyHead(bucket_starts=(2, 4, 8), weights=(0.3, 0.6, 0.9), sampling_boost=boost)
    odds = [w / (1 - w) * boost for w in head.weights]
    reference = CopyHead(bucket_starts=(2, 4, 8), weights=tuple(o / (1 + o) for o in odds))
    phrase = torch.randint(3, 61, (7,))
    prompt = torch.stack([torch.cat([phrase, phrase[:3]]), torch.cat([phrase.flip(0), phrase.flip(0)[:3]])])
    options = SamplingOptions(temperature=0.8, top_p=0.95)
    out = generate(model, prompt, options, 12, rng=torch.Generator().manual_seed(7), copy_head=head)
    rng, seq = torch.Generator().manual_seed(7), prompt
    for _ in range(12):
        logp = reference.mix_log_probs(model(seq)[0], seq)[:, -1]
        seq = torch.cat([seq, sample_from_logits(logp, options, rng=rng)[:, None]], dim=1)
    assert torch.equal(out, seq)
    plain = generate(model, prompt, SamplingOptions(temperature=0), 12)
    copied = generate(model, prompt, SamplingOptions(temperature=0), 12, copy_head=CopyHead((2,), (0.99,)))
    assert torch.equal(copied[:, 10:14], torch.stack([phrase[3:7], phrase.flip(0)[3:7]]))  # it copies on
    assert not torch.equal(plain, copied)  # and the model alone would not have
