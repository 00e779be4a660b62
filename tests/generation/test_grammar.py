"""TokenGrammar's controls on the shipped tokenizer: instruments, end-of-piece, time in seconds, opening, meter.

Random walks draw uniformly from whatever the mask allows, so they reach states a trained model rarely
would (a bar's last position, every program); a rule that holds there holds for any model.
"""

from pathlib import Path

import pytest
import torch

from musicmha import ConfigError
from musicmha.generation.controls import DRUMS, MAX_BARS, InstrumentRule, LengthRule, Opening, prompt_programs
from musicmha.generation.grammar import TokenGrammar
from musicmha.data.tokenizer import MusicTokenizer

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "musicmha-small"


@pytest.fixture(scope="module")
def spec():
    return MusicTokenizer.load(CHECKPOINT).grammar_spec()


def _ids(spec, *names):
    index = {name: i for i, name in enumerate(spec.tokens)}
    return [index[n] for n in names]


def _walk(grammar, start, steps, seed):
    """Sample uniformly from the mask; return the tokens and the masks seen."""
    rng = torch.Generator().manual_seed(seed)
    seq = torch.tensor([start])
    masks = []
    for _ in range(steps):
        mask = grammar(seq)[0]
        masks.append(mask)
        token = torch.multinomial(mask.float(), 1, generator=rng)
        seq = torch.cat([seq, token[None]], dim=1)
        grammar.follow(seq)
        if token.item() == grammar.spec.eos_id or grammar.reached().all():  # as generation stops
            break
    return seq[0].tolist(), masks


@pytest.mark.parametrize("rule", [InstrumentRule(frozenset({0, 33}), drums=False),
                                  InstrumentRule(frozenset({40}), drums=True),
                                  InstrumentRule(frozenset(), drums=True)], ids=["0+33", "40+kit", "kit"])
def test_instrument_rule_holds_on_every_step(spec, rule):
    for seed in range(3):
        grammar = TokenGrammar(spec, instruments=rule, length=LengthRule(bars=MAX_BARS))  # no early end
        tokens, _ = _walk(grammar, [spec.bos_id], 600, seed)
        assert len(tokens) == 601
        names = [spec.tokens[i] for i in tokens]
        programs = {int(n.split("_")[1]) for n in names if n.startswith("Program_")}
        assert programs and all(rule.allows(p) for p in programs)
        assert rule.drums or not any(n.startswith("PitchDrum") for n in names)
        for before, after in zip(names, names[1:]):  # the kit plays drum pitches, other programs pitches
            if before.startswith("Program_"):
                assert after.startswith("PitchDrum" if before == "Program_-1" else "Pitch_"), (before, after)


def test_end_of_piece_waits_for_the_bars_and_masks_never_empty(spec):
    for seed in range(4):
        # One program, so that a uniform walk moves through time instead of stacking notes of 129 programs.
        grammar = TokenGrammar(spec, length=LengthRule(bars=3), instruments=InstrumentRule(frozenset({0}), False))
        tokens, masks = _walk(grammar, [spec.bos_id], 3000, seed)
        assert all(m.any() for m in masks)
        bar = spec.tokens.index("Bar_None")
        for step, mask in enumerate(masks):
            bars_so_far = tokens[1:step + 1].count(bar)
            assert not mask[spec.eos_id] or bars_so_far > 3
        assert grammar.reached().all() and tokens.count(bar) == 4 and spec.eos_id not in tokens
    early = TokenGrammar(spec, length=LengthRule(bars=3, allow_early_end=True))
    _, masks = _walk(early, [spec.bos_id], 60, 0)
    assert any(m[spec.eos_id] for m in masks)  # the option lets the piece end before


def test_seconds_follow_the_tempo_tokens(spec):
    grammar = TokenGrammar(spec)
    seq = _ids(spec, "Bar_None", "TimeSig_4/4", "Position_0", "Tempo_121.29", "Position_16", "Tempo_60.32",
               "Bar_None", "TimeSig_4/4", "Position_8")
    grammar.follow(torch.tensor([[spec.bos_id, *seq]]))
    row = grammar.rows[0]
    # 2 quarters at 121.29, 2 at 60.32, then 1 quarter into bar 2 (Position 8 = 1 beat) at 60.32
    assert row.seconds == pytest.approx(2 * 60 / 121.29 + 3 * 60 / 60.32)
    grammar.anchor(qpm=90.0)  # the prompt's exact tempo replaces its token's rounding from here on
    grammar.follow(torch.tensor([[spec.bos_id, *seq, *_ids(spec, "Position_24")]]))
    assert grammar.rows[0].new_seconds == pytest.approx(2 * 60 / 90.0)
    assert grammar.rows[0].new_bars == 0


def test_opening_tokens_are_forced_in_miditok_order(spec):
    forced = Opening(100, (3, 4)).token_ids(spec)
    assert [spec.tokens[i] for i in forced] == ["Bar_None", "TimeSig_3/4", "Position_0", "Tempo_100.97"]
    assert [spec.tokens[i] if i is not None else None for i in Opening(tempo=60).token_ids(spec)] == \
        ["Bar_None", None, "Position_0", "Tempo_60.32"]
    assert [spec.tokens[i] for i in Opening(time_signature=(6, 8)).token_ids(spec)] == ["Bar_None", "TimeSig_6/8"]
    grammar = TokenGrammar(spec, opening=forced)
    tokens, masks = _walk(grammar, [spec.bos_id], 40, 0)
    assert tokens[1:5] == forced and all(int(m.sum()) == 1 for m in masks[:4])
    names = [spec.tokens[i] for i in tokens]
    assert {n for n in names if n.startswith("TimeSig")} == {"TimeSig_3/4"}  # and the meter holds


def test_meter_holds_after_a_prompt(spec):
    grammar = TokenGrammar(spec)
    seq = [spec.bos_id, *_ids(spec, "Bar_None", "TimeSig_3/4", "Position_0", "Program_0", "Pitch_60",
                              "Velocity_91", "Duration_1.0.8", "Bar_None")]
    allowed = grammar(torch.tensor([seq]))[0]
    assert [spec.tokens[i] for i in allowed.nonzero().flatten().tolist()] == ["TimeSig_3/4"]


@pytest.mark.parametrize("tempo,message", [(0, "positive"), (-3, "positive"), (float("nan"), "positive"),
                                           (1000, r"40\.\.250"), (10, r"40\.\.250")])
def test_tempos_the_tokenizer_cannot_write_are_refused(spec, tempo, message):
    with pytest.raises(ConfigError, match=message):
        Opening(tempo=tempo).token_ids(spec)


def test_unknown_meters_are_refused_with_the_known_ones(spec):
    with pytest.raises(ConfigError, match="5/16 cannot be written.*3/4, 4/4"):
        Opening(time_signature=(5, 16)).token_ids(spec)
    with pytest.raises(ConfigError, match="two positive whole numbers"):
        Opening(time_signature=(0, 4))


def test_instrument_rule_resolution():
    piano_drums = {0, DRUMS}
    assert InstrumentRule.resolve(piano_drums) == InstrumentRule(frozenset({0}), drums=True)
    assert InstrumentRule.resolve({40, 41}) == InstrumentRule(frozenset({40, 41}), drums=False)
    assert InstrumentRule.resolve({0}, drums=True).drums
    assert InstrumentRule.resolve({0}, instruments=[33]) == InstrumentRule(frozenset({33}), drums=False)
    assert InstrumentRule.resolve(piano_drums, allow_new_instruments=True).unrestricted
    assert InstrumentRule.resolve(piano_drums, allow_new_instruments=True, drums=False).programs is None
    assert InstrumentRule.resolve(None).unrestricted  # from nothing: anything ...
    assert InstrumentRule.resolve(None, instruments=[0, 33]) == InstrumentRule(frozenset({0, 33}), drums=False)
    assert InstrumentRule.resolve(None, drums=False) == InstrumentRule(None, drums=False)
    for bad in ([128], [-1], [0, 300]):
        with pytest.raises(ConfigError, match="0..127"):
            InstrumentRule.resolve({0}, instruments=bad)
    with pytest.raises(ConfigError, match="not both"):
        InstrumentRule.resolve({0}, instruments=[0], allow_new_instruments=True)
    with pytest.raises(ConfigError, match="no instruments left"):
        InstrumentRule.resolve({0}, instruments=[], drums=False)


def test_prompt_programs_include_the_kit(spec):
    assert prompt_programs(spec, _ids(spec, "Program_0", "Pitch_60", "Program_-1", "PitchDrum_36")) == {0, DRUMS}


def test_length_caps():
    for kwargs, message in (({"bars": MAX_BARS + 1}, "at most"), ({"seconds": 301.0}, "at most"),
                            ({"max_new_tokens": 10**6}, "at most"), ({"bars": 0}, "positive"),
                            ({"bars": 2, "seconds": 3}, "at most one"), ({"bars": 2.5}, "whole")):
        with pytest.raises(ConfigError, match=message):
            LengthRule(**kwargs)


def _onsets(spec, tokens):
    """(bar, position, program) -> pitches, read from the token strings with a plain loop (not the grammar)."""
    chords, bar, position, program = {}, 0, -1, 0
    for token in tokens:
        kind, _, value = spec.tokens[token].partition("_")
        if kind == "Bar":
            bar, position = bar + 1, -1
        elif kind == "Position":
            position = int(value)
        elif kind == "Program":
            program = int(value)
        elif kind in ("Pitch", "PitchDrum"):
            chords.setdefault((bar, position, program), []).append(int(value))
    return chords


@pytest.fixture(scope="module")
def band_spec():
    return MusicTokenizer.load(CHECKPOINT.parent / "musicmha-1k").grammar_spec()


@pytest.mark.parametrize("seed", range(3))
def test_random_walks_never_repeat_a_note_nor_grow_a_chord_past_the_prompts(band_spec, seed):
    """A uniform random walk piles notes up wherever the mask lets it: the strongest test of the limits."""
    spec = band_spec
    # the prompt: a 3-note piano chord, one bass note and two drum hits at one onset
    velocity = next(t for t in spec.tokens if t.startswith("Velocity_"))
    note = lambda program, pitch: [f"Program_{program}", pitch, velocity, "Duration_1.0.8"]  # noqa: E731
    prompt = _ids(spec, "Bar_None", "TimeSig_4/4", "Position_0", *note(0, "Pitch_60"), *note(0, "Pitch_64"),
                  *note(0, "Pitch_67"), *note(33, "Pitch_40"), *note(-1, "PitchDrum_36"), *note(-1, "PitchDrum_42"))
    grammar = TokenGrammar(spec, instruments=InstrumentRule(frozenset({0, 33}), drums=True), limit_chords=True,
                           length=LengthRule(bars=40))  # no early end: the walk runs its 600 steps
    grammar.follow(torch.tensor([[spec.bos_id, *prompt]]))
    grammar.anchor()
    tokens, _ = _walk(grammar, [spec.bos_id, *prompt], 600, seed)
    new = _onsets(spec, tokens[len(prompt) + 1:])
    assert sum(len(p) for p in new.values()) > 40  # the walk did write notes
    limits = {0: 3, 33: 1, DRUMS: 2}
    for (bar, position, program), pitches in new.items():
        assert len(pitches) == len(set(pitches)), (bar, position, program, pitches)
        assert len(pitches) <= limits[program], (bar, position, program, pitches)
    assert len({(bar, position) for bar, position, _ in new}) > 5  # time moved on


def test_without_the_limit_chords_grow_but_notes_still_never_repeat(band_spec):
    spec = band_spec
    grammar = TokenGrammar(spec, instruments=InstrumentRule(frozenset({0}), drums=False), length=LengthRule(bars=40))
    tokens, _ = _walk(grammar, [spec.bos_id], 600, 0)
    chords = _onsets(spec, tokens)
    assert max(len(p) for p in chords.values()) > 3  # uniform draws stack notes when nothing limits them
    assert all(len(p) == len(set(p)) for p in chords.values())


def _programs_per_bar(spec, tokens):
    """The programs that play in each bar, read from the token strings with a plain loop."""
    bars, program = [], 0
    for token in tokens:
        kind, _, value = spec.tokens[token].partition("_")
        if kind == "Bar":
            bars.append(set())
        elif kind == "Program":
            program = int(value)
        elif kind in ("Pitch", "PitchDrum") and bars:
            bars[-1].add(program)
    return bars


@pytest.mark.parametrize("seed", range(3))
def test_random_walks_keep_every_part_of_the_prompt_playing(band_spec, seed):
    """Bass and drums play in every prompt bar, the piano rests two bars running: a uniform walk (which drops
    parts freely) must then bring bass and drums into every new bar and leave the piano out at most two."""
    spec = band_spec
    velocity = next(t for t in spec.tokens if t.startswith("Velocity_"))
    note = lambda program, pitch: [f"Program_{program}", pitch, velocity, "Duration_1.0.8"]  # noqa: E731
    prompt = []
    for bar in range(8):
        prompt += ["Bar_None", "TimeSig_4/4", "Position_0", *note(33, "Pitch_40"), *note(-1, "PitchDrum_36")]
        if bar not in (3, 4):
            prompt += [*note(0, "Pitch_60")]
    prompt = _ids(spec, *prompt)
    rule = InstrumentRule(frozenset({0, 33}), drums=True)
    grammar = TokenGrammar(spec, instruments=rule, limit_chords=True, keep_parts=True, length=LengthRule(bars=12))
    grammar.follow(torch.tensor([[spec.bos_id, *prompt]]))
    grammar.anchor()
    tokens, _ = _walk(grammar, [spec.bos_id, *prompt], 3000, seed)
    bars = _programs_per_bar(spec, tokens[len(prompt) + 1:])[:-1]  # complete new bars (the last one is open)
    assert len(bars) >= 8
    assert all({33, DRUMS} <= bar for bar in bars), bars
    rest = longest = 0
    for bar in bars:
        rest = 0 if 0 in bar else rest + 1
        longest = max(longest, rest)
    assert longest <= 2
    # the same walk without the rule lets parts drop out
    free = TokenGrammar(spec, instruments=rule, limit_chords=True, length=LengthRule(bars=12))
    free.follow(torch.tensor([[spec.bos_id, *prompt]]))
    free.anchor()
    loose, _ = _walk(free, [spec.bos_id, *prompt], 3000, seed)
    assert not all({0, 33, DRUMS} <= bar for bar in _programs_per_bar(spec, loose[len(prompt) + 1:])[:-1])
