"""MusicGenerator: prompts preserved, continuation placement, seeds, lengths, grammar, bad prompts."""

from pathlib import Path

import pytest
import symusic
import torch

from musicmha import ConfigError, MidiError, ModelConfig, MusicTransformer, MusicmhaError
from musicmha.generation.music_generator import MusicGenerator
from musicmha.generation.grammar import TokenGrammar
from musicmha.data.tokenizer import MusicTokenizer

PROMPTS = sorted((Path(__file__).resolve().parents[2] / "data" / "prompts").glob("*.mid"))


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    tokenizer = MusicTokenizer.from_config()
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=256,
                         dropout=0.0)
    return MusicGenerator(MusicTransformer(config), tokenizer)


def _notes(track):
    return [(n.time, n.duration, n.pitch, n.velocity) for n in track.notes]


@pytest.mark.parametrize("prompt", PROMPTS[:4], ids=lambda p: p.stem)
def test_prompt_is_kept_note_for_note_and_continuation_follows_it(generator, prompt):
    original = symusic.Score(str(prompt))
    (result,) = generator.continue_midi(prompt, bars=2, seed=0)  # bars: a random model cannot end at once
    out = result.score
    assert out.ticks_per_quarter == original.ticks_per_quarter
    kept = [(t.time, t.qpm) for t in original.tempos]
    assert [(t.time, t.qpm) for t in out.tempos][:len(kept)] == kept  # the model's tempo changes come after
    assert all(t.time >= original.end() for t in out.tempos[len(kept):])
    assert [(t.time, t.numerator, t.denominator) for t in out.time_signatures] == \
        [(t.time, t.numerator, t.denominator) for t in original.time_signatures]
    new_notes = sum(len(t.notes) for t in result.continuation.tracks)
    assert new_notes > 0 and out.note_num() == original.note_num() + new_notes
    last_onset = max(n.time for t in original.tracks for n in t.notes)
    for track, kept in zip(original.tracks, out.tracks):  # each prompt track is still there, untouched
        assert (kept.name, kept.program, kept.is_drum) == (track.name, track.program, track.is_drum)
        assert set(_notes(track)) <= set(_notes(kept))
    assert min(n.time for t in result.continuation.tracks for n in t.notes) >= last_onset
    assert result.boundary_tick == original.end()


def test_same_seed_same_midi_other_seed_other_midi(generator):
    runs = [generator.continue_midi(PROMPTS[0], max_new_tokens=80, seed=s)[0] for s in (5, 5, 6)]
    assert runs[0].new_token_ids == runs[1].new_token_ids
    assert runs[0].score.dumps_midi() == runs[1].score.dumps_midi()
    assert runs[0].new_token_ids != runs[2].new_token_ids


def test_constrained_decoding_makes_no_grammar_errors(generator):
    constrained = generator.continue_midi(None, max_new_tokens=150, seed=1, num_samples=12)
    free = generator.continue_midi(None, max_new_tokens=150, seed=1, num_samples=12, constrained=False)
    assert [generator.tokenizer.token_error_ratio(r.token_ids) for r in constrained] == [0.0] * 12
    assert sum(generator.tokenizer.token_error_ratio(r.token_ids) for r in free) / 12 > 0.2
    assert all(r.score.note_num() > 0 for r in constrained)
    assert len({tuple(r.new_token_ids) for r in constrained}) == 12  # the batch rows differ


def test_length_in_bars_and_seconds(generator):
    bar = generator.tokenizer.bar_id
    for result in generator.continue_midi(PROMPTS[0], bars=2, seed=2, num_samples=3):
        assert result.new_token_ids.count(bar) <= 3  # the bar in progress, then two more
    (result,) = generator.continue_midi(PROMPTS[0], seconds=4.0, seed=3)
    prompt = symusic.Score(str(PROMPTS[0]))
    start = max(n.time for t in prompt.tracks for n in t.notes)
    last_onset = max(n.time for t in result.continuation.tracks for n in t.notes)
    seconds = (last_onset - start) / prompt.ticks_per_quarter * 60 / prompt.tempos[-1].qpm
    assert seconds <= 4.0 + 1e-6


def test_long_prompts_are_cut_at_a_bar_start(generator):
    tokenizer = generator.tokenizer
    ids = tokenizer.encode(PROMPTS[0])
    (result,) = generator.continue_midi(PROMPTS[0], max_new_tokens=10, seed=0, prompt_tokens=40)
    condition = result.token_ids[:len(result.token_ids) - len(result.new_token_ids)]
    assert condition[0] == tokenizer.bos_id and condition[1] == tokenizer.bar_id
    assert len(condition) - 1 <= 40 and condition[1:] == ids[len(ids) - len(condition) + 1:]


def test_bad_prompts_and_arguments(generator, tmp_path):
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02")
    with pytest.raises(MidiError):
        generator.continue_midi(broken)
    with pytest.raises(MidiError):
        generator.continue_midi(b"")
    with pytest.raises(MusicmhaError, match="at most one"):
        generator.continue_midi(None, bars=2, seconds=3)
    with pytest.raises(MusicmhaError, match="must be positive"):
        generator.continue_midi(None, num_samples=0)
    small = MusicTransformer(ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2))
    with pytest.raises(MusicmhaError, match="different checkpoints"):
        MusicGenerator(small, generator.tokenizer)


# --- controls: instruments, length, opening (issue 14) -------------------------------------------------

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "musicmha-small"


def _band_with_drums() -> symusic.Score:
    """A hand-built 2-track prompt: piano chords and a drum kit, 4 bars of 4/4 at 120 BPM."""
    score = symusic.Score(480)
    piano, kit = symusic.Track("piano", program=0), symusic.Track("drums", program=0, is_drum=True)
    for beat in range(16):
        for pitch in (60, 64, 67):
            piano.notes.append(symusic.Note(beat * 480, 440, pitch + (beat // 4) * 2, 80))
        kit.notes.append(symusic.Note(beat * 480, 120, 36 if beat % 2 == 0 else 38, 100))
        kit.notes.append(symusic.Note(beat * 480 + 240, 120, 42, 90))
    score.tracks.extend([piano, kit])
    score.tempos.append(symusic.Tempo(0, 120.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    return score


def _instruments(score: symusic.Score) -> set[tuple[int, bool]]:
    return {(t.program, t.is_drum) for t in score.tracks if len(t.notes)}


def _kit_agnostic(keys):  # miditok writes every drum track as program 0 + is_drum
    return {(0 if drum else program, drum) for program, drum in keys}


@pytest.fixture(scope="module")
def shipped():
    return MusicGenerator.from_pretrained(CHECKPOINT, device="cpu")


class _EagerToEnd(MusicTransformer):
    """Random weights that want to end the piece at every step: the length promise must hold anyway."""

    def forward(self, *args, **kwargs):
        logits, rest = super().forward(*args, **kwargs)
        logits[..., 2] += 30.0  # EOS
        return logits, rest


@pytest.fixture(scope="module")
def eager(generator):
    model = _EagerToEnd(generator.model.config)
    model.load_state_dict(generator.model.state_dict())
    return MusicGenerator(model, generator.tokenizer)


@pytest.mark.parametrize("length", [{"bars": 2}, {"max_new_tokens": 200}, {"seconds": 3.0}], ids=str)
def test_new_notes_stay_on_the_prompts_instruments_random_model(generator, length):
    # Random weights spread notes over all 129 programs: only the mask can keep them on the prompt's.
    for prompt in [*PROMPTS, _band_with_drums()]:
        score = prompt if isinstance(prompt, symusic.Score) else symusic.Score(str(prompt))
        allowed = _kit_agnostic(_instruments(score))
        for seed in (0, 1):
            for result in generator.continue_midi(prompt, seed=seed, num_samples=2, **length):
                assert _kit_agnostic(_instruments(result.continuation)) <= allowed, (prompt, seed)
                assert {(t.program, t.is_drum) for t in result.score.tracks} == \
                    {(t.program, t.is_drum) for t in score.tracks}  # no new tracks in the output


@pytest.mark.slow
def test_new_notes_stay_on_the_prompts_instruments_shipped_model(shipped):
    band = _band_with_drums()
    for prompt in [*PROMPTS, band]:
        score = prompt if isinstance(prompt, symusic.Score) else symusic.Score(str(prompt))
        for bars, seed in ((2, 0), (4, 1)):
            for result in shipped.continue_midi(prompt, bars=bars, seed=seed, num_samples=2):
                assert _kit_agnostic(_instruments(result.continuation)) <= _kit_agnostic(_instruments(score))
    # (The shipped model trained on music21's corpus, which has no drums: it keeps to the piano here.)


def test_an_explicit_instrument_list_is_obeyed(generator):
    for result in generator.continue_midi(_band_with_drums(), bars=2, seed=3, num_samples=3, instruments=[33],
                                          drums=False):
        assert _instruments(result.continuation) == {(33, False)}
    results = generator.continue_midi(None, bars=2, seed=4, num_samples=3, instruments=[0, 40], drums=True)
    assert set().union(*(_kit_agnostic(_instruments(r.continuation)) for r in results)) <= \
        {(0, False), (40, False), (0, True)}
    free = generator.continue_midi(PROMPTS[0], max_new_tokens=200, seed=0, allow_new_instruments=True)
    assert len(_instruments(free[0].continuation)) > 1  # the random model then wanders over programs


def test_bars_are_reached_even_by_a_model_that_wants_to_end(eager):
    bar = eager.tokenizer.bar_id
    for prompt in (PROMPTS[0], _band_with_drums(), None):
        for bars in (1, 3):
            for result in eager.continue_midi(prompt, bars=bars, seed=bars, num_samples=3):
                # the bar in progress is finished, then `bars` complete bars: the next Bar line stops it
                assert result.new_token_ids.count(bar) == bars + 1
                assert eager.tokenizer.eos_id not in result.new_token_ids
    early = eager.continue_midi(PROMPTS[0], bars=3, seed=0, num_samples=3, allow_early_end=True)
    assert all(r.new_token_ids.count(bar) < 4 for r in early)  # with the option, the model may end


def test_seconds_are_reached_through_the_tempo_map(eager):
    for result in eager.continue_midi(PROMPTS[1], seconds=3.0, seed=0, num_samples=3):
        timeline = TokenGrammar(eager.spec)
        condition = result.token_ids[:len(result.token_ids) - len(result.new_token_ids)]
        timeline.follow(torch.tensor([condition]))
        timeline.anchor(qpm=symusic.Score(str(PROMPTS[1])).tempos[-1].qpm)
        timeline.follow(torch.tensor([result.token_ids]))
        assert 3.0 <= timeline.rows[0].new_seconds < 4.0


def test_opening_tempo_and_meter_from_nothing(generator):
    for result in generator.continue_midi(None, bars=2, seed=5, num_samples=2, tempo=100, time_signature=(3, 4),
                                          instruments=[0, 33], drums=True):
        tokens = [generator.tokenizer.token_name(i) for i in result.new_token_ids[:4]]
        assert tokens == ["Bar_None", "TimeSig_3/4", "Position_0", "Tempo_100.97"]
        # the token is the tokenizer's nearest step, the file the tempo asked for (every front end alike)
        assert result.score.tempos[0].time == 0 and result.score.tempos[0].mspq == 600_000
        assert [(t.numerator, t.denominator) for t in result.score.time_signatures] == [(3, 4)]
        assert _kit_agnostic(_instruments(result.score)) <= {(0, False), (33, False), (0, True)}


def test_the_prompt_fills_the_context_less_one_slide(generator):
    context = generator.model.config.max_seq_len
    ids = generator.tokenizer.encode(PROMPTS[1])
    assert len(ids) > context  # long enough to be cut
    (result,) = generator.continue_midi(PROMPTS[1], bars=1, seed=0)
    condition = result.token_ids[:len(result.token_ids) - len(result.new_token_ids)]
    assert context // 2 < len(condition) - 1 <= context - context // 4  # more than the old half context
    assert condition[1:] == ids[len(ids) - len(condition) + 1:]


@pytest.mark.parametrize("kwargs,message", [
    ({"instruments": [128]}, "0..127"), ({"instruments": [-1, 0]}, "0..127"),
    ({"instruments": [0], "allow_new_instruments": True}, "not both"),
    ({"prompt": None, "tempo": 0}, "positive"), ({"prompt": None, "tempo": 400}, r"40\.\.250"),
    ({"prompt": None, "time_signature": (5, 16)}, "3/4"), ({"tempo": 100}, "from nothing"),
    ({"bars": 65}, "at most 64"), ({"seconds": 1000}, "at most 300"), ({"max_new_tokens": 10**5}, "at most 8192"),
])
def test_bad_controls_are_one_line_errors(generator, kwargs, message):
    kwargs = {"prompt": PROMPTS[0], **kwargs}
    with pytest.raises(ConfigError, match=message) as error:
        generator.continue_midi(kwargs.pop("prompt"), **kwargs)
    assert "\n" not in str(error.value)


def test_each_sample_is_made_again_alone_from_its_own_seed(generator):
    four = generator.continue_midi(PROMPTS[0], bars=2, seed=10, num_samples=4)
    assert [r.seed for r in four] == [10, 11, 12, 13]
    assert len({tuple(r.new_token_ids) for r in four}) > 1
    for k in (0, 2, 3):
        alone = generator.continue_midi(PROMPTS[0], bars=2, seed=10 + k, num_samples=1)[0]
        assert alone.seed == 10 + k and alone.new_token_ids == four[k].new_token_ids


class _TempoLover(MusicTransformer):
    """Puts most of its probability on Tempo tokens whenever the grammar allows one."""

    tempo_ids: list[int] = []

    def forward(self, *args, **kwargs):
        logits, rest = super().forward(*args, **kwargs)
        logits[..., self.tempo_ids] += 8.0
        return logits, rest


def test_the_tempo_holds_unless_changes_are_allowed(generator):
    model = _TempoLover(generator.model.config)
    model.load_state_dict(generator.model.state_dict())
    vocab = generator.tokenizer.vocab
    model.tempo_ids = [i for name, i in vocab.items() if name.startswith("Tempo_")]
    lover = MusicGenerator(model, generator.tokenizer)

    def tempo_tokens(result):
        return sum(i in model.tempo_ids for i in result.new_token_ids)

    held = lover.continue_midi(PROMPTS[1], bars=2, seed=1, num_samples=3)
    assert all(tempo_tokens(r) == 0 for r in held)
    original = symusic.Score(str(PROMPTS[1]))
    assert all(list(r.score.tempos) == list(original.tempos) for r in held)
    free = lover.continue_midi(PROMPTS[1], bars=2, seed=1, num_samples=3, allow_tempo_changes=True)
    assert sum(tempo_tokens(r) for r in free) > 3
    # From nothing: the opening tempo (forced, or the model's first) is the only one.
    for result in lover.continue_midi(None, bars=2, seed=2, num_samples=2):
        assert tempo_tokens(result) == 1


def test_every_new_bar_holds_a_note_unless_empty_bars_are_allowed(generator):
    model = _TempoLover(generator.model.config)  # reused as "lover of one token kind": here, Bar
    model.load_state_dict(generator.model.state_dict())
    bar = generator.tokenizer.bar_id
    model.tempo_ids = [bar]
    hasty = MusicGenerator(model, generator.tokenizer)
    note_kinds = ("Pitch_", "PitchDrum_")

    def bars_without_notes(result):
        empty, notes = 0, None
        for token in result.new_token_ids:
            name = generator.tokenizer.token_name(token)
            if token == bar:
                empty += notes == 0
                notes = 0
            elif name.startswith(note_kinds) and notes is not None:
                notes += 1
        return empty

    full = hasty.continue_midi(PROMPTS[0], bars=4, seed=3, num_samples=3)
    assert all(r.new_token_ids.count(bar) >= 4 and bars_without_notes(r) == 0 for r in full)
    # the prompt's parts play in every bar: they keep playing, even where empty bars are allowed ...
    kept = hasty.continue_midi(PROMPTS[0], bars=4, seed=3, num_samples=3, allow_empty_bars=True)
    assert all(bars_without_notes(r) == 0 for r in kept)
    # ... unless they may stop too
    sparse = hasty.continue_midi(PROMPTS[0], bars=4, seed=3, num_samples=3, allow_empty_bars=True,
                                 allow_parts_to_stop=True)
    assert sum(bars_without_notes(r) for r in sparse) >= 3
