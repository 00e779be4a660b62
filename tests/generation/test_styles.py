"""Style and density at generation time: the request's words, the tokens the model reads, the errors."""

from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from musicmha import ConfigError, GenerationRequest, ModelConfig, MusicTransformer
from musicmha.data.fim import FIM_SPECIAL_TOKENS
from musicmha.data.styles import DENSITY_LEVELS, STYLES
from musicmha.data.tokenizer import MusicTokenizer, TokenizerConfig
from musicmha.generation.music_generator import MusicGenerator

PROMPTS = sorted((Path(__file__).resolve().parents[2] / "data" / "prompts").glob("*.mid"))


def _generator(tokenizer: MusicTokenizer) -> MusicGenerator:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=256,
                         dropout=0.0)
    return MusicGenerator(MusicTransformer(config), tokenizer)


@pytest.fixture(scope="module")
def generator():
    return _generator(MusicTokenizer.from_config())


def test_request_words():
    assert GenerationRequest(style="Bossa Nova").style == "bossa-nova"
    assert GenerationRequest(density="busy").density == 5 and GenerationRequest(density=2).density == 2
    assert GenerationRequest(density="Busier").density == "busier"
    for bad, message in ((dict(style="disco"), "unknown style 'disco'; choose one of: chorale"),
                         (dict(density=0), f"density must be a level from 1 .* to {DENSITY_LEVELS}"),
                         (dict(density="loud"), "unknown density 'loud'; choose a level")):
        with pytest.raises(ConfigError, match=message):
            GenerationRequest(**bad)


def test_the_asked_style_and_density_open_the_context(generator):
    cond = generator.tokenizer.condition_tokens
    (result,) = generator.continue_midi(PROMPTS[0], style="swing", density="very busy", bars=1, seed=0)
    assert result.token_ids[1:3] == [cond.styles["swing"], cond.densities[5]]
    (plain,) = generator.continue_midi(PROMPTS[0], bars=1, seed=0)
    assert not set(plain.token_ids) & cond.all_ids  # nothing asked: the prompt alone, as before
    # the conditioning tokens are not music: the prompt comes back note for note either way
    assert sum(t.note_num() for t in result.score.tracks) >= symusic.Score(str(PROMPTS[0])).note_num()


@pytest.mark.parametrize("asked", [dict(style="waltz"), dict(density=3), dict(style="swing", density="calm")])
def test_a_piece_from_nothing_opens_with_the_asked_style(generator, asked):
    """From nothing, the context is BOS and the asked tokens alone (which decode to no music): the piece is
    made and decoded (a crash until 2026-12-07: miditok cannot decode an empty sequence)."""
    cond = generator.tokenizer.condition_tokens
    (result,) = generator.continue_midi(None, bars=2, seed=0, **asked)
    opened = [cond.styles[asked["style"]]] if "style" in asked else []
    assert result.token_ids[1:1 + len(opened)] == opened
    assert result.score.note_num() > 0 and result.continuation.note_num() == result.score.note_num()
    assert generator.tokenizer.decode([generator.tokenizer.bos_id, *opened]).note_num() == 0


def test_busier_and_calmer_are_one_level_from_the_prompts_own(generator):
    cond = generator.tokenizer.condition_tokens
    ids = generator.tokenizer.encode(PROMPTS[1])
    own = cond.level_of(np.array(ids))
    for word, step in (("busier", 1), ("calmer", -1)):
        request = GenerationRequest(density=word)
        expected = cond.densities[min(DENSITY_LEVELS, max(1, own + step)) - 1]
        assert generator.conditioning_tokens(request, ids) == [expected]
    with pytest.raises(ConfigError, match="relative to a prompt"):
        generator.continue_midi(None, density="busier", bars=1)


def test_infill_puts_the_style_after_the_prefixs_bos(generator):
    request = GenerationRequest(style="chorale", density=3)
    plan = generator.plan_infill(generator.tokenizer.encode(PROMPTS[0]), 2, 2, request=request)
    cond = generator.tokenizer.condition_tokens
    at = plan.scaffold.index(generator.tokenizer.fim_tokens.prefix) + 1
    at += plan.scaffold[at] == generator.tokenizer.bos_id  # after the piece's BOS when the prefix starts there
    assert plan.scaffold[at:at + 2] == [cond.styles["chorale"], cond.densities[2]]
    assert not set(plan.prefix) & cond.all_ids  # the prefix decoded back into the piece holds no conditioning


def test_a_model_without_the_tokens_refuses_them_in_one_line():
    old = TokenizerConfig(special_tokens=("PAD", "BOS", "EOS", *FIM_SPECIAL_TOKENS))
    generator = _generator(MusicTokenizer.from_config(old))
    assert generator.tokenizer.condition_tokens is None
    with pytest.raises(ConfigError, match="trained without style and density tokens"):
        generator.continue_midi(PROMPTS[0], style=next(iter(STYLES)), bars=1)
    (result,) = generator.continue_midi(PROMPTS[0], bars=1, seed=0)  # and works as before without them
    assert result.continuation.note_num() > 0
