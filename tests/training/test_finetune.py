"""Fine-tuning an exported model (--init-from), LoRA adapters (--lora-rank, merge-lora) and early stopping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datafiles import copy_prompts

from musicmha import ConfigError, MusicTransformer
from musicmha.cli import main
from musicmha.nn.lora import LoRAConfig, LoRALinear, add_adapters, merged_state
from musicmha.training.train import train
from musicmha.training.config import TrainConfig

FAST = dict(preset="tiny", d_model=32, max_seq_len=64, batch_size=4, eval_every=10, eval_batches=2,
            log_every=5, warmup_steps=3)


@pytest.fixture(scope="module")
def base(real_tokens, tmp_path_factory):
    """A small trained model to fine-tune."""
    out = tmp_path_factory.mktemp("base") / "run"
    train(TrainConfig.from_sources(data=str(real_tokens), out=str(out), max_steps=30, save_every=30, **FAST))
    return out / "model"


def _tune(tokens, base, out, **overrides):
    values = dict(eval_batches=2, log_every=5, batch_size=4, save_every=10, max_steps=10, warmup_steps=2)
    return train(TrainConfig.from_sources(data=str(tokens), out=str(out), init_from=str(base),
                                          **{**values, **overrides}))


def _weights(folder) -> dict[str, torch.Tensor]:
    return MusicTransformer.from_pretrained(folder).state_dict()


def test_lora_layer_starts_as_its_base_and_merges_exactly():
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    layer = LoRALinear(linear, rank=4, scale=0.5)
    x = torch.randn(3, 16)
    assert torch.equal(layer(x), linear(x))  # B = 0: the adapter changes nothing until trained
    with torch.no_grad():
        layer.lora_b.normal_()
    merged = torch.nn.Linear(16, 8)
    merged.load_state_dict({"weight": layer.merged_weight(), "bias": linear.bias})
    assert torch.allclose(layer(x), merged(x), atol=1e-6)
    assert torch.allclose(layer(x), x @ (linear.weight + 0.5 * layer.lora_b @ layer.lora_a).t() + linear.bias,
                          atol=1e-6)


def test_full_finetune_starts_from_the_checkpoint(real_tokens, base, tmp_path):
    # A learning rate of ~0 keeps the weights where they started: they must be the checkpoint's.
    result = _tune(real_tokens, base, tmp_path / "still", max_steps=2, learning_rate=1e-12)
    start, end = _weights(base), _weights(result.export_dir)
    assert all(torch.allclose(start[k], end[k], atol=1e-8) for k in start)
    info = json.loads((result.export_dir / "training.json").read_text())
    assert info["init_from"] == str(base.resolve()) and info["preset"] == "finetune"
    moved = _tune(real_tokens, base, tmp_path / "moved", max_steps=5, learning_rate=1e-3)
    assert not all(torch.equal(start[k], v) for k, v in _weights(moved.export_dir).items())


def test_lora_trains_only_adapters_and_merges_with_one_command(real_tokens, base, tmp_path):
    result = _tune(real_tokens, base, tmp_path / "lora", lora_rank=4, learning_rate=1e-2, max_steps=10)
    start, tuned = _weights(base), _weights(result.export_dir)
    changed = {k for k in start if not torch.equal(start[k], tuned[k])}
    targets = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight", "up.weight", "down.weight")
    assert changed and all(k.endswith(targets) for k in changed)  # embeddings, norms: frozen
    adapter = tmp_path / "lora" / "adapter"
    config = json.loads((adapter / "adapter.json").read_text())
    assert config["rank"] == 4 and config["base"] == str(base.resolve())
    model = MusicTransformer(MusicTransformer.from_pretrained(base).config)
    trainable = add_adapters(model, LoRAConfig(rank=4))
    d, ff, layers = model.config.d_model, model.config.d_ff, model.config.n_layers
    rank = 4  # A (rank x in) and B (out x rank) per target: q, k, v, out (d x d), up (d -> ff), down (ff -> d)
    assert trainable == layers * (4 * rank * (d + d) + rank * (d + ff) + rank * (ff + d))
    assert (adapter / "adapter.safetensors").stat().st_size < (result.export_dir / "model.safetensors").stat().st_size / 4
    assert main(["merge-lora", str(adapter), "--out", str(tmp_path / "merged")]) == 0
    merged = _weights(tmp_path / "merged")
    assert all(torch.equal(merged[k], tuned[k]) for k in tuned)
    assert (tmp_path / "merged" / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()


def test_merged_state_has_the_plain_model_keys():
    from conftest import tiny_config

    model = MusicTransformer(tiny_config())
    plain_keys = set(model.state_dict())
    add_adapters(model, LoRAConfig(rank=2, targets=("q_proj", "up")))
    assert set(merged_state(model)) == plain_keys


def test_early_stop_keeps_the_best_weights(real_tokens, base, tmp_path):
    # A learning rate far too high makes validation worse after the first evaluations: the run stops early
    # and model/ holds the weights of the best evaluation, not the last.
    result = _tune(real_tokens, base, tmp_path / "es", max_steps=200, learning_rate=0.05, eval_every=2,
                   early_stop=2, save_every=50)
    assert result.steps < 200
    info = json.loads((result.export_dir / "training.json").read_text())
    assert info["final_validation_nll"] <= result.final_validation_nll
    assert info["steps"] < result.steps


def test_bad_finetune_requests_are_one_line_errors(real_tokens, base, tmp_path, capsys):
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        TrainConfig(data="d", out="o", init_from=str(tmp_path))
    with pytest.raises(ConfigError, match="contradict the checkpoint's shape: d_model=64"):
        TrainConfig(data="d", out="o", init_from=str(base), d_model=64)
    with pytest.raises(ConfigError, match="LoRA rank must be a positive"):
        TrainConfig(data="d", out="o", init_from=str(base), lora_rank=-2)
    with pytest.raises(ConfigError, match="larger than the model width"):
        TrainConfig(data="d", out="o", init_from=str(base), lora_rank=33)
    with pytest.raises(ConfigError, match="give --init-from"):
        TrainConfig(data="d", out="o", lora_rank=4)
    with pytest.raises(ConfigError, match="no module named attn"):
        _tune(real_tokens, base, tmp_path / "t", lora_rank=2, lora_targets="attn")
    # A token folder made with another tokenizer (the first shipped model's, without FIM tokens)
    copy_prompts(tmp_path / "in")
    old = Path(__file__).resolve().parents[2] / "checkpoints" / "musicmha-small"
    assert main(["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "old"), "--workers", "1",
                 "--tokenizer", str(old)]) == 0
    code = main(["train", "--data", str(tmp_path / "old"), "--out", str(tmp_path / "x"), "--init-from", str(base)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "prepared with another tokenizer" in err[-1] and f"--tokenizer {base}" in err[-1]


def test_merging_an_adapter_that_names_no_base_asks_for_one(tmp_path, capsys):
    (tmp_path / "adapter.json").write_text(json.dumps({"rank": 2, "base": ""}))
    assert main(["merge-lora", str(tmp_path), "--out", str(tmp_path / "merged")]) == 2
    err = capsys.readouterr().err.strip()
    assert "names no base checkpoint: pass --base" in err and "\n" not in err
    assert not (tmp_path / "merged").exists()


def test_lora_defaults_to_a_higher_learning_rate(base):
    assert TrainConfig(data="d", out="o", init_from=str(base)).learning_rate == 3e-4
    assert TrainConfig(data="d", out="o", init_from=str(base), lora_rank=4).learning_rate == 1e-3
    assert TrainConfig(data="d", out="o", init_from=str(base), lora_rank=4, learning_rate=5e-4).learning_rate == 5e-4


def test_a_checkpoint_carries_over_into_a_vocabulary_that_extends_it():
    """musicmha-1k's tokenizer lacks the style and density tokens: its rows go over by name, every other
    weight as is, so the extended model scores old tokens exactly as the base did."""
    from musicmha.data.fim import FIM_SPECIAL_TOKENS
    from musicmha.data.tokenizer import MusicTokenizer, TokenizerConfig
    from musicmha.nn.config import ModelConfig
    from musicmha.training.train import carry_over

    old = MusicTokenizer.from_config(TokenizerConfig(special_tokens=("PAD", "BOS", "EOS", *FIM_SPECIAL_TOKENS)))
    new = MusicTokenizer.from_config()
    rows = new.rows_from(old)
    assert rows is not None and len(rows) == old.vocab_size < new.vocab_size
    assert new.rows_from(new) is not None and old.rows_from(new) is None  # the smaller cannot take the larger
    shape = dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=64, dropout=0.0)
    torch.manual_seed(0)
    base = MusicTransformer(ModelConfig(vocab_size=old.vocab_size, **shape)).eval()
    model = MusicTransformer(ModelConfig(vocab_size=new.vocab_size, **shape)).eval()
    carry_over(base, model, rows)
    to_base = {new_id: base_id for new_id, base_id in rows.items()}
    new_ids = torch.tensor(sorted(to_base))[torch.randint(0, len(to_base), (2, 20))]
    base_ids = new_ids.clone().apply_(lambda i: to_base[i])
    new_logits, _ = model(new_ids)
    base_logits, _ = base(base_ids)
    order = torch.tensor(sorted(to_base))
    assert torch.allclose(new_logits[..., order], base_logits[..., torch.tensor([to_base[int(i)] for i in order])],
                          atol=1e-5)
    assert model.lm_head.weight.data_ptr() == model.token_embedding.weight.data_ptr()  # still tied


def test_previous_token_tables_can_be_added_over_a_checkpoint_without_them(real_tokens, base, tmp_path):
    """--init-from a model trained without previous tokens, with 2: every old weight as it was, the new tables
    at zero (the same function at the start), trained from there; a later run may raise the count, not lower it."""
    still = _tune(real_tokens, base, tmp_path / "still", max_steps=2, learning_rate=1e-12, previous_tokens=2)
    start, end = _weights(base), _weights(still.export_dir)
    tables = {"previous_embeddings.0.weight", "previous_embeddings.1.weight"}
    assert set(end) == set(start) | tables
    assert all(torch.allclose(start[k], end[k], atol=1e-8) for k in start)
    assert all(end[k].abs().max() < 1e-6 for k in tables)
    moved = _tune(real_tokens, base, tmp_path / "moved", max_steps=5, learning_rate=1e-3, previous_tokens=2)
    assert all(_weights(moved.export_dir)[k].abs().max() > 1e-4 for k in tables)
    assert MusicTransformer.from_pretrained(moved.export_dir).config.previous_tokens == 2
    with pytest.raises(ConfigError, match="previous_tokens=2; a run may raise it, not lower it"):
        _tune(real_tokens, moved.export_dir, tmp_path / "back", previous_tokens=1)
