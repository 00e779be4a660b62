import pytest

from musicmha import ConfigError, ModelConfig


def test_defaults_are_filled_in():
    config = ModelConfig(vocab_size=100, d_model=64, max_seq_len=128)
    assert config.d_ff == 256 and config.max_relative_distance == 127 and config.head_dim == 16


@pytest.mark.parametrize("kwargs, message", [
    (dict(vocab_size=0), "vocab_size must be >= 1"),
    (dict(vocab_size=10, d_model=30, n_heads=4), "divisible"),
    (dict(vocab_size=10, dropout=1.0), "dropout"),
    (dict(vocab_size=10, position="learned"), "position must be one of"),
    (dict(vocab_size=10, n_layers=2.5), "n_layers must be an integer"),
    (dict(vocab_size=10, d_model=12, n_heads=4, position="rope"), "even head dimension"),
    (dict(vocab_size=10, rope_base=float("nan")), "rope_base"),
])
def test_impossible_values_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)


def test_dict_round_trip_and_unknown_fields():
    config = ModelConfig(vocab_size=10, position="alibi")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="my.json: unknown field"):
        ModelConfig.from_dict({**config.to_dict(), "n_layer": 3}, source="my.json")
