"""The density control kept by decoding (musicmha/generation/density.py): every new bar holds between its
level's least and most notes, for a decoder that would rather rest and for one that would pile notes up; the
level's bounds agree with the level a bar's notes are given in training (musicmha.data.styles)."""

from __future__ import annotations

from pathlib import Path

import pytest
import symusic
import torch

from musicmha import ConfigError, ModelConfig, MusicTransformer
from musicmha.data.styles import DENSITY_LEVELS, density_level
from musicmha.data.fim import FIM_SPECIAL_TOKENS
from musicmha.data.tokenizer import MusicTokenizer, TokenizerConfig
from musicmha.generation.density import BarDensity, level_bounds, prompt_level, resolve_level
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.music_generator import MusicGenerator

PROMPTS = Path(__file__).resolve().parents[2] / "data" / "prompts"
QUARTET = PROMPTS / "beethoven_op18no1_quartet.mid"  # four tracks, 8 bars of 3/4
TUNE = PROMPTS / "oneills_tune_1.mid"


@pytest.fixture(scope="module")
def tokenizer() -> MusicTokenizer:
    return MusicTokenizer.from_config()


@pytest.mark.parametrize("level", range(1, DENSITY_LEVELS + 1))
def test_bounds_are_the_notes_that_training_calls_this_level(level):
    least, most = level_bounds(level)
    assert density_level(least, 1) == level and (least == 1 or density_level(least - 1, 1) == level - 1)
    if most is None:
        assert level == DENSITY_LEVELS and density_level(10_000, 1) == level
    else:
        assert density_level(most, 1) == level and density_level(most + 1, 1) == level + 1


def test_calmer_and_busier_are_one_level_from_the_prompts_own(tokenizer):
    spec = tokenizer.grammar_spec()
    ids = tokenizer.encode(symusic.Score(str(QUARTET)))
    names = [spec.tokens[i] for i in ids]  # an independent count of notes and bars
    own = density_level(sum(n.startswith("Pitch") for n in names), names.count("Bar_None"))
    assert prompt_level(spec, ids) == own
    assert resolve_level("busier", spec, ids) == min(own + 1, DENSITY_LEVELS)
    assert resolve_level("calmer", spec, ids) == max(own - 1, 1)
    assert resolve_level(3, spec, ids) == 3


def _prefer(mask: torch.Tensor, names: list[str], eager: bool) -> int:
    """A decoder that would rather rest (bar line first, then the latest onset) or pile notes up (another note
    at this onset, then the next onset); otherwise the first allowed note part, never a tempo or the end."""
    allowed = mask.nonzero()[:, 0].tolist()
    kinds = [names[i].split("_", 1)[0] for i in allowed]
    order = ("Pitch", "Position") if eager else ("Bar", "Position")
    for kind in (*order, "Program", "Pitch", "Velocity", "Duration", "Bar"):
        choices = [i for i, k in zip(allowed, kinds, strict=True) if k == kind]
        if choices:
            if kind == "Position":
                choices.sort(key=lambda i: int(names[i].split("_")[1]))
                return choices[0] if eager else choices[-1]
            return choices[0]
    return allowed[0]


def _drive(tokenizer, prompt: Path, level: int, eager: bool, bars: int = 4) -> list[int]:
    spec = tokenizer.grammar_spec()
    names = list(spec.tokens)
    ids = [tokenizer.bos_id, *tokenizer.encode(symusic.Score(str(prompt)))]
    grammar = TokenGrammar(spec, limit_chords=True)
    grammar.follow(torch.tensor([ids]))
    grammar.anchor()
    density = BarDensity(grammar, level)
    row = list(ids)
    while row.count(spec.bar_id) - ids.count(spec.bar_id) <= bars and len(row) < len(ids) + 4000:
        row.append(_prefer(density(torch.tensor([row]))[0], names, eager))
    return row[len(ids):]


def _notes_per_new_bar(tokenizer, new: list[int]) -> list[int]:
    """Notes in each complete new bar, counted from the token names."""
    names = tokenizer.grammar_spec().tokens
    counts, current = [], None
    for token in new:
        name = names[token]
        if name == "Bar_None":
            if current is not None:
                counts.append(current)
            current = 0
        elif current is not None and name.startswith("Pitch"):
            current += 1
    return counts


@pytest.mark.parametrize("prompt, level", [(QUARTET, 2), (QUARTET, 4), (TUNE, 3), (TUNE, 5), (QUARTET, 1)])
def test_every_new_bar_holds_its_levels_notes_for_a_resting_and_a_piling_decoder(tokenizer, prompt, level):
    least, most = level_bounds(level)
    resting = _notes_per_new_bar(tokenizer, _drive(tokenizer, prompt, level, eager=False))
    piling = _notes_per_new_bar(tokenizer, _drive(tokenizer, prompt, level, eager=True))
    assert len(resting) == len(piling) == 4
    assert all(least <= n <= most for n in resting + piling), (resting, piling)


def test_without_the_rule_the_two_decoders_leave_the_level(tokenizer):
    """The reference: the same decoders on the grammar alone write 1 note a bar, and many more than 12."""
    spec = tokenizer.grammar_spec()
    ids = [tokenizer.bos_id, *tokenizer.encode(symusic.Score(str(QUARTET)))]
    for eager, check in ((False, lambda n: n < 7), (True, lambda n: n > 12)):
        grammar = TokenGrammar(spec, limit_chords=True)
        grammar.follow(torch.tensor([ids]))
        grammar.anchor()
        row = list(ids)
        while row.count(spec.bar_id) - ids.count(spec.bar_id) <= 2 and len(row) < len(ids) + 4000:
            row.append(_prefer(grammar(torch.tensor([row]))[0], list(spec.tokens), eager))
        assert all(check(n) for n in _notes_per_new_bar(tokenizer, row[len(ids):]))


@pytest.mark.parametrize("tokens", [True, False])
def test_a_model_continues_at_the_asked_level_with_or_without_density_tokens(tokens):
    """A model trained with the Density tokens reads the level too; one without them (musicmha-1k's kind) is
    kept at it by the grammar alone."""
    old = TokenizerConfig(special_tokens=("PAD", "BOS", "EOS", *FIM_SPECIAL_TOKENS))
    tokenizer = MusicTokenizer.from_config() if tokens else MusicTokenizer.from_config(old)
    assert (tokenizer.condition_tokens is not None) == tokens
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=1, n_heads=2, max_seq_len=512)
    generator = MusicGenerator(MusicTransformer(config), tokenizer)
    for level in (2, 4):
        least, most = level_bounds(level)
        (result,) = generator.continue_midi(QUARTET, bars=3, seed=1, density=level)
        counts = _notes_per_new_bar(tokenizer, result.new_token_ids)
        assert counts and all(least <= n <= most for n in counts), counts
    with pytest.raises(ConfigError, match="relative to a prompt"):
        generator.continue_midi(None, bars=1, density="busier")
