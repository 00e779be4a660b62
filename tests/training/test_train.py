"""`musicmha train` / `eval` on real tokens: loss falls, exact resume, checkpoints, validation, eval sums."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from musicmha import ConfigError, MusicTransformer
from musicmha.cli import main
from musicmha.data.dataset import TokenSplit
from musicmha.evaluation.evaluate import evaluate
from musicmha.data.midi_io import count_notes
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.training.train import train
from musicmha.training.config import TrainConfig

FAST = dict(preset="tiny", d_model=32, max_seq_len=64, batch_size=4, eval_every=10, eval_batches=2,
            log_every=5, warmup_steps=3)


def _train(tokens, out, **overrides):
    return train(TrainConfig.from_sources(data=str(tokens), out=str(out), **{**FAST, **overrides}))


@pytest.mark.slow
def test_loss_falls_and_the_export_loads(real_tokens, tmp_path):
    result = _train(real_tokens, tmp_path / "run", max_steps=60, save_every=20, keep_last=2)
    vocab = MusicTokenizer.load(real_tokens).vocab_size
    assert result.final_validation_nll < math.log(vocab) - 1.5  # far better than uniform guessing
    export = tmp_path / "run" / "model"
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                         "training.json"]
    info = json.loads((export / "training.json").read_text())
    assert info["steps"] == 60 and info["final_validation_nll"] == result.final_validation_nll
    model = MusicTransformer.from_pretrained(export)
    assert model.config.vocab_size == vocab and model.config.max_seq_len == 64
    states = sorted(p.name for p in (tmp_path / "run" / "state").iterdir())
    assert states == ["step-00000040", "step-00000060"]  # keep_last=2, no staging folder left


@pytest.mark.slow
def test_resumed_run_ends_with_identical_weights(real_tokens, tmp_path):
    # dropout: RNG state matters; fim_rate, reprise_rate: the rearranged rows must come back the same after a resume
    # copy_weight and the style/density rows (the corpus gives these chorales a style) must replay too
    common = dict(decay_steps=30, save_every=10, dropout=0.1, grad_accum=2, fim_rate=0.3, reprise_rate=0.3,
                  copy_weight=3.0, copy_min_match=8)
    _train(real_tokens, tmp_path / "straight", max_steps=30, **common)
    _train(real_tokens, tmp_path / "parts", max_steps=20, **common)
    _train(real_tokens, tmp_path / "parts", max_steps=30, resume=True, **common)
    a = MusicTransformer.from_pretrained(tmp_path / "straight" / "model").state_dict()
    b = MusicTransformer.from_pretrained(tmp_path / "parts" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        _train(real_tokens, tmp_path / "parts", max_steps=40, **common)
    with pytest.raises(ConfigError, match="different settings.*learning_rate"):
        _train(real_tokens, tmp_path / "parts", max_steps=40, resume=True, learning_rate=0.1, **common)
    # A run folder from before an option existed holds no value for it: it ran with the option's default.
    saved = tmp_path / "parts" / "train_config.json"
    settings = json.loads(saved.read_text())
    del settings["dropout"]
    saved.write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match=r"different settings than the run in \S+: dropout$"):
        _train(real_tokens, tmp_path / "parts", max_steps=40, resume=True, **common)


@pytest.mark.slow
def test_a_resume_may_change_the_curriculum_and_the_run_folder_logs_it(real_tokens, tmp_path):
    # Reprise and FIM rates change the batches, not the model or optimizer: a long run may switch them on for
    # its last part. Each resume is one line of resumes.jsonl, with what changed (a missing option: its default).
    common = dict(decay_steps=30, save_every=10, dropout=0.1, max_seq_len=128)  # 64 tokens hold no FIM middle
    _train(real_tokens, tmp_path / "run", max_steps=10, **common)
    saved = tmp_path / "run" / "train_config.json"
    saved.write_text(json.dumps({k: v for k, v in json.loads(saved.read_text()).items() if k != "reprise_rate"}))
    _train(real_tokens, tmp_path / "run", max_steps=20, resume=True, reprise_rate=0.5, **common)
    _train(real_tokens, tmp_path / "run", max_steps=30, resume=True, reprise_rate=0.5, fim_rate=0.2, **common)
    _train(real_tokens, tmp_path / "same", max_steps=20, **common)
    _train(real_tokens, tmp_path / "same", max_steps=30, resume=True, **common)
    log = [json.loads(line) for line in (tmp_path / "run" / "resumes.jsonl").read_text().splitlines()]
    assert [(r["step"], r["changed"]) for r in log] == [
        (10, {"reprise_rate": [0.0, 0.5], "max_steps": [10, 20]}),
        (20, {"fim_rate": [0.0, 0.2], "max_steps": [20, 30]})]
    assert json.loads(saved.read_text())["fim_rate"] == 0.2
    changed = MusicTransformer.from_pretrained(tmp_path / "run" / "model").state_dict()
    plain = MusicTransformer.from_pretrained(tmp_path / "same" / "model").state_dict()
    assert not all(torch.equal(changed[k], plain[k]) for k in changed)  # the new rates did reach the batches
    with pytest.raises(ConfigError, match=r"different settings than the run in \S+: learning_rate$"):
        _train(real_tokens, tmp_path / "run", max_steps=40, resume=True, learning_rate=0.5, reprise_rate=0.5,
               fim_rate=0.2, **common)


@pytest.mark.slow
def test_two_processes_train_together(real_tokens, tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts a single process on this machine (it needs mpirun
    # for multi-CPU); torchrun with ACCELERATE_USE_CPU gives a real 2-process gloo run.
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free port for the rendezvous (port 0 is not accepted there)
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", port,
               "-m", "musicmha", "train", "--data", str(real_tokens), "--out", str(tmp_path / "ddp"),
               "--preset", "tiny", "--d-model", "32", "--max-seq-len", "64", "--batch-size", "4",
               "--max-steps", "40", "--eval-every", "20", "--eval-batches", "2", "--warmup-steps", "3"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "ddp" / "model" / "training.json").read_text())
    vocab = MusicTokenizer.load(real_tokens).vocab_size
    assert info["num_processes"] == 2 and info["final_validation_nll"] < math.log(vocab) - 1.0
    MusicTransformer.from_pretrained(tmp_path / "ddp" / "model")


def test_eval_equals_a_hand_computation(real_tokens, tmp_path):
    tokenizer = MusicTokenizer.load(real_tokens)
    model = MusicTransformer(TrainConfig(data="x", out="y", **FAST).model_config(tokenizer.vocab_size)).eval()
    result = evaluate(model, tokenizer, real_tokens, split="train", window=50, max_pieces=2, progress=False)
    split = TokenSplit(real_tokens, "train")
    total, count, notes = 0.0, 0, 0
    for index in range(2):
        piece = torch.tensor(split.piece(index).astype("int64"))
        notes += count_notes(tokenizer.decode(piece.tolist()))
        for start in range(0, len(piece) - 1, 50):  # window k: tokens start+1 .. start+50 predicted
            chunk = piece[start:start + 51]
            with torch.no_grad():
                logits = model(chunk[None, :-1])[0][0]
            total += F.cross_entropy(logits, chunk[1:], reduction="sum").item()
            count += len(chunk) - 1
    assert result.tokens == count == sum(len(split.piece(i)) - 1 for i in range(2))
    assert result.notes == notes > 0
    assert math.isclose(result.nll, total / count, rel_tol=1e-6)
    assert math.isclose(result.perplexity, math.exp(total / count), rel_tol=1e-6)
    assert math.isclose(result.bits_per_note, total / math.log(2) / notes, rel_tol=1e-6)
    assert len(result.nll_by_position) == 50


def test_bad_data_folder_and_config_are_one_line_errors(tmp_path, capsys, real_tokens):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicmha train: error:") and str(tmp_path) in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # refused before any work started
    assert main(["train", "--data", str(real_tokens), "--out", str(tmp_path / "r"), "--d-model", "30",
                 "--n-heads", "4"]) == 2
    assert "divisible" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text("preset: tiny\nlearning_rat: 0.1\n")
    assert main(["train", "--config", str(config), "--data", str(real_tokens), "--out", str(tmp_path / "q")]) == 2
    assert "unknown training option(s) learning_rat" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    (dict(preset="huge"), "preset must be one of"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(mixed_precision="fp8"), "mixed_precision"),
    (dict(learning_rate=2.0), "learning_rate"),
    (dict(position="sinusoid"), "position must be one of"),
    (dict(fim_rate=1.5), "fim_rate must be in"),
    (dict(reprise_rate=-0.1), "reprise_rate must be in"),
    (dict(part_rate=2), "part_rate must be in"),
    (dict(part_layout="beside"), "part_layout must be one of lead, after"),
])
def test_training_config_validation(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(data="d", out="o", **overrides)


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "small", "batch-size": 3, "learning_rate": 0.01}))
    cfg = TrainConfig.from_sources(path, data="d", out="o", learning_rate=0.02, max_steps=None)
    assert (cfg.batch_size, cfg.learning_rate, cfg.d_model, cfg.max_steps) == (3, 0.02, 256, 2000)


def test_fim_needs_a_tokenizer_with_sentinels(tmp_path):
    from datafiles import copy_prompts

    from musicmha.data.tokenizer import MusicTokenizer

    copy_prompts(tmp_path / "in")
    shipped = os.path.join(os.path.dirname(__file__), "..", "..", "checkpoints", "musicmha-small")
    assert MusicTokenizer.load(shipped).fim_tokens is None
    assert main(["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "old"), "--workers", "1",
                 "--tokenizer", shipped]) == 0
    with pytest.raises(ConfigError, match="no fill-in-the-middle tokens"):
        _train(tmp_path / "old", tmp_path / "run", max_steps=2, fim_rate=0.5)


def test_attention_backend_is_a_training_option(tmp_path):
    cfg = TrainConfig.from_sources(data="d", out="o", preset="tiny", attention_backend="blocked")
    assert cfg.model_config(61).attention_backend == "blocked"
    assert TrainConfig.from_sources(data="d", out="o", preset="tiny").model_config(61).attention_backend == "auto"
    with pytest.raises(ConfigError, match="attention_backend must be one of"):
        TrainConfig.from_sources(data="d", out="o", attention_backend="fast")
    with pytest.raises(ConfigError, match="flex has no attention dropout: set dropout 0"):
        TrainConfig.from_sources(data="d", out="o", preset="small", attention_backend="flex")  # dropout 0.1


@pytest.mark.slow
def test_training_with_a_backend_then_resuming_with_another(real_tokens, tmp_path):
    with pytest.raises(ConfigError, match="flex trains on CUDA only"):  # FlexAttention has no CPU backward
        _train(real_tokens, tmp_path / "flex", max_steps=2, attention_backend="flex", dropout=0.0)
    _train(real_tokens, tmp_path / "run", max_steps=4, save_every=2, attention_backend="sdpa")
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["attention_backend"] == "sdpa"
    _train(real_tokens, tmp_path / "run", max_steps=6, save_every=2, resume=True, attention_backend="blocked")
    exported = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert exported["attention_backend"] == "auto"  # the loading device picks its own
    info = json.loads((tmp_path / "run" / "model" / "training.json").read_text())
    assert info["train_config"]["attention_backend"] == "blocked" and info["steps"] == 6


@pytest.mark.slow
def test_host_syncs_per_optimizer_step(real_tokens, tmp_path, monkeypatch):
    """The loop reads the device once per optimizer step (finite checks and loss together), not three
    times per micro-step: counted as calls from musicmha's code that copy a tensor to the host, between a
    4- and an 8-step run (torch's CPU AdamW reads its CPU step counters with .item(): not a device sync)."""
    import sys

    counts = {"n": 0}
    for name in ("item", "tolist", "cpu", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            counts["n"] += "/musicmha/" in sys._getframe(1).f_code.co_filename
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    syncs = {}
    for steps in (4, 8):
        counts["n"] = 0
        _train(real_tokens, tmp_path / f"run-{steps}", max_steps=steps, grad_accum=2, eval_every=100,
               save_every=100, log_every=100)
        syncs[steps] = counts["n"]
    assert (syncs[8] - syncs[4]) / 4 == 1, syncs  # before: 5 (2 micro-steps x 2, + the gradient check)


def test_eval_device_option(real_tokens, tmp_path, capsys):
    model = MusicTransformer(TrainConfig(data="x", out="y", **FAST).model_config(
        MusicTokenizer.load(real_tokens).vocab_size))
    model.save_pretrained(tmp_path)
    MusicTokenizer.load(real_tokens).save(tmp_path)
    common = ["eval", "--checkpoint", str(tmp_path), "--data", str(real_tokens), "--max-pieces", "1", "--json"]
    assert main([*common, "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] > 0
    for bad, message in (("cuda:99", "no such CUDA device"), ("tpu", "expected cpu, cuda")):
        assert main([*common, "--device", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_a_run_with_part_rows_exports_a_model_that_adds_parts_in_its_layout(prompt_tokens, tmp_path):
    """The bundled prompts hold pieces of several parts (the quartet, the rag's two staves): a short run with
    LEAD part rows trains, and its export says so, so that add_part may write a part the LEAD way with it."""
    from musicmha.generation.music_generator import MusicGenerator
    from musicmha.generation.part_after import LEAD

    result = _train(prompt_tokens, tmp_path / "run", max_steps=6, save_every=6, fim_rate=0.2, part_rate=0.5,
                    max_seq_len=128)
    info = json.loads((result.export_dir / "training.json").read_text())
    assert info["train_config"]["part_rate"] == 0.5 and info["train_config"]["part_layout"] == LEAD
    assert MusicGenerator.from_pretrained(result.export_dir).trained_part_layout == LEAD
    plain = _train(prompt_tokens, tmp_path / "plain", max_steps=2, save_every=2, fim_rate=0.2, max_seq_len=128)
    assert MusicGenerator.from_pretrained(plain.export_dir).trained_part_layout is None
