"""SamplingOptions: one validation, one-line messages, and the app and the CLI reading their inputs the same way."""

import math

import pytest

from musicmha.cli import build_parser, main
from musicmha.errors import ConfigError
from musicmha.generation.options import SEED_LIMIT, SamplingOptions


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-0.1), "temperature must be a finite number >= 0"),
    (dict(temperature=math.nan), "temperature"),
    (dict(temperature=math.inf), "temperature"),
    (dict(temperature=None), "temperature"),
    (dict(temperature="1"), "temperature"),
    (dict(temperature=True), "temperature"),
    (dict(top_k=0), "top-k must be a whole number >= 1"),
    (dict(top_k=-4), "top-k"),
    (dict(top_k=2.0), "top-k"),  # the constructor takes what it says; from_inputs turns 2.0 into 2
    (dict(top_p=0), r"top-p must be in \(0, 1\]"),
    (dict(top_p=1.01), "top-p"),
    (dict(top_p=math.nan), "top-p"),
    (dict(seed=-1), "seed must be a whole number from 0 to"),
    (dict(seed=SEED_LIMIT), "seed"),
    (dict(seed=3.0), "seed"),
])
def test_each_bad_value_is_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as error:
        SamplingOptions(**kwargs)
    assert "\n" not in str(error.value)


def test_the_domain_edges_are_accepted():
    assert SamplingOptions(temperature=0).greedy and SamplingOptions(top_k=1).greedy
    assert not SamplingOptions(temperature=0.01, top_k=2).greedy
    SamplingOptions(temperature=100.0, top_k=10**6, top_p=1.0, seed=SEED_LIMIT - 1)
    SamplingOptions(top_p=1e-9, seed=0)
    options = SamplingOptions(0.7, 40, 0.9)
    assert options.with_seed(5) == SamplingOptions(0.7, 40, 0.9, seed=5) and options.seed is None
    with pytest.raises(AttributeError):
        options.temperature = 2.0  # frozen: validated once, never changed after


def test_from_inputs_reads_off_values_and_whole_floats():
    assert SamplingOptions.from_inputs(1, 0, 1, 7.0) == SamplingOptions(1.0, None, None, 7)
    assert SamplingOptions.from_inputs(0.5, 20.0, 0.9, None) == SamplingOptions(0.5, 20, 0.9)
    assert type(SamplingOptions.from_inputs(1, 20.0).top_k) is int
    for bad in (dict(top_k=2.5), dict(seed=7.5), dict(seed=math.nan), dict(top_k=math.inf), dict(top_p=-1)):
        with pytest.raises(ConfigError):
            SamplingOptions.from_inputs(**bad)


# (temperature, top_k, top_p, seed): the CLI's flags (None: flag absent) and the app's fields (top-k 0 and
# top-p 1 stand for an absent flag, as on the page).
ACCEPTED = [(1.0, None, None, 7), (0.0, None, None, 7), (0.8, 40, 0.95, 2**40), (1.0, 0, None, 3),
            (1.0, None, 1.0, 3)]
REFUSED = [(-1.0, None, None, 7), (math.nan, None, None, 7), (math.inf, None, None, 7), (1.0, -2, None, 7),
           (1.0, None, 1.5, 7), (1.0, None, 0.0, 7), (1.0, None, None, -1), (1.0, None, None, SEED_LIMIT)]


def _cli(temperature, top_k, top_p, seed):
    from musicmha.cli.music_commands import request_from_args

    argv = ["generate", "--out", "x.mid", "--temperature", str(temperature), "--seed", str(seed)]
    argv += ["--top-k", str(top_k)] if top_k is not None else []
    argv += ["--top-p", str(top_p)] if top_p is not None else []
    try:
        return request_from_args(build_parser().parse_args(argv)).sampling
    except ConfigError as error:
        return str(error)


def _app(temperature, top_k, top_p, seed):
    pytest.importorskip("gradio")
    from musicmha.app.settings import page_request

    try:
        request = page_request("tokens", 32, temperature, top_k or 0, 1.0 if top_p is None else top_p, seed,
                               False, 1, 0)
    except ConfigError as error:
        return str(error)
    return request.sampling


@pytest.mark.parametrize("case", ACCEPTED + REFUSED, ids=lambda c: "-".join(map(str, c)))
def test_the_app_and_the_cli_make_the_same_options(case):
    """Same options from both, or the same message: --temperature 0 is greedy in both, -1 refused in both."""
    from_cli = _cli(*case)
    assert from_cli == _app(*case)
    assert isinstance(from_cli, SamplingOptions) == (case in ACCEPTED)


def test_the_cli_refuses_bad_sampling_before_loading_a_model(tmp_path, capsys):
    missing = tmp_path / "no-such-checkpoint"
    assert main(["generate", "--checkpoint", str(missing), "--out", str(tmp_path / "x.mid"),
                 "--temperature", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicmha generate: error: temperature must be") and err.count("\n") == 1
    assert main(["infill", "--checkpoint", str(missing), "--prompt", "x.mid", "--bars", "2-3",
                 "--out", str(tmp_path / "y.mid"), "--top-p", "2"]) == 2
    assert "top-p must be in (0, 1]" in capsys.readouterr().err


def _tiny_generator():
    """An untrained one-layer model with the default tokenizer: enough to check what reaches the sampler."""
    import torch

    from musicmha import ModelConfig, MusicGenerator, MusicTokenizer, MusicTransformer

    torch.manual_seed(0)
    tokenizer = MusicTokenizer.from_config()
    model = MusicTransformer(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layers=1, n_heads=2,
                                         max_seq_len=64, dropout=0.0))
    return MusicGenerator(model, tokenizer)


def test_music_generator_takes_the_options_or_their_fields_not_both():
    generator = _tiny_generator()
    options = SamplingOptions(temperature=0.8, top_k=30, seed=5)
    by_options = generator.continue_midi(None, max_new_tokens=24, sampling=options, num_samples=2)
    by_fields = generator.continue_midi(None, max_new_tokens=24, temperature=0.8, top_k=30, seed=5, num_samples=2)
    assert [r.new_token_ids for r in by_options] == [r.new_token_ids for r in by_fields]
    assert [r.seed for r in by_options] == [5, 6]
    fresh = generator.continue_midi(None, max_new_tokens=4, sampling=SamplingOptions())[0].seed
    assert 0 <= fresh < 2**31  # drawn, and reported so the sample can be made again
    with pytest.raises(ConfigError, match="not both"):
        generator.continue_midi(None, max_new_tokens=4, sampling=options, seed=5)
    with pytest.raises(ConfigError, match="temperature"):
        generator.continue_midi(None, max_new_tokens=4, temperature=-1)
    with pytest.raises(ConfigError, match="SamplingOptions"):
        generator.continue_midi(None, max_new_tokens=4, sampling={"temperature": 1.0})


def test_a_request_object_and_its_fields_make_the_same_music():
    """continue_midi(prompt, GenerationRequest(...)) is continue_midi(prompt, **its fields); not both at once."""
    from musicmha import GenerationRequest

    generator = _tiny_generator()
    request = GenerationRequest(bars=2, num_samples=2, sampling=SamplingOptions(temperature=0.9, seed=11),
                                tempo=96, time_signature=(3, 4))
    by_request = generator.continue_midi(None, request)
    by_fields = generator.continue_midi(None, bars=2, num_samples=2, temperature=0.9, seed=11, tempo=96,
                                        time_signature=(3, 4))
    assert [r.new_token_ids for r in by_request] == [r.new_token_ids for r in by_fields]
    assert request.updated(seed=12).sampling == SamplingOptions(temperature=0.9, seed=12)
    with pytest.raises(ConfigError, match="not both"):
        generator.continue_midi(None, request, bars=3)
    with pytest.raises(ConfigError, match="unknown generation option"):
        generator.continue_midi(None, bar=3)
    with pytest.raises(ConfigError, match="infill takes no bars"):
        generator.infill(b"", 1, 2, request)  # refused before the prompt is read
    with pytest.raises(ConfigError, match="cannot be written by this tokenizer"):  # checked against the model
        generator.check(GenerationRequest(time_signature=(5, 16)))
