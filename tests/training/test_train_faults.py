"""Training that survives faults: SIGKILL at random moments and mid-checkpoint, a full disk, a read-only
run folder, non-finite losses and gradients. Each must leave loadable checkpoints and a clear message."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from musicmha import MusicTransformer
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.errors import TrainingError
from musicmha.training.train import train
from musicmha.training.config import TrainConfig

DRIVER = Path(__file__).parents[1] / "fault_driver.py"
# A tiny run with dropout and gradient accumulation, so that RNG and optimizer state both matter on resume.
FLAGS = {"preset": "tiny", "d_model": 32, "max_seq_len": 64, "batch_size": 4, "eval_every": 20, "eval_batches": 2,
             "warmup_steps": 3, "log_every": 5, "dropout": 0.1, "grad_accum": 2, "save_every": 4, "keep_last": 2}
STEPS = 60
START_TIMEOUT = 120  # seconds for a process to import torch and reach its training loop on a busy machine


def _command(tokens: Path, out: Path, **extra) -> list[str]:
    flags = {**FLAGS, "max_steps": STEPS, **extra}
    command = [sys.executable, str(DRIVER), "train", "--data", str(tokens), "--out", str(out)]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}"] if value is True else [f"--{name.replace('_', '-')}", str(value)]
    return command


def _env(**fault: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICMHA_FAULT")}
    return {**env, "OMP_NUM_THREADS": "1", **fault}


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=kwargs.pop("env", _env()), check=False, capture_output=True, text=True,
                          timeout=300, **kwargs)


def _wait_for(predicate, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not predicate():
        assert process.poll() is None, f"exited ({process.returncode}) before {what}: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} after {START_TIMEOUT} s"
        time.sleep(0.01)


def _started(out: Path, since: float):
    """True once this process has written train_config.json: startup is over, the training loop begins."""
    config = out / "train_config.json"
    return lambda: config.is_file() and config.stat().st_mtime > since


def _newest_step(run: Path) -> int:
    """The step of the newest complete state folder of a run (0 before its first)."""
    return max((int(p.name.split("-")[1]) for p in (run / "state").glob("step-*")), default=0)


def _kill(process: subprocess.Popen) -> bool:
    """SIGKILL; True when it was still running (the kill interrupted something)."""
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    return alive and process.returncode == -signal.SIGKILL


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return MusicTransformer.from_pretrained(folder).state_dict()


def _load_state(folder: Path, tokens: Path) -> None:
    """Load a state folder the way --resume does (accelerate load_state into a fresh model and optimizer)."""
    from accelerate import Accelerator

    from musicmha.training.train import _optimizer

    cfg = TrainConfig.from_sources(data=str(tokens), out="unused", **FLAGS)
    model = MusicTransformer(cfg.model_config(MusicTokenizer.load(tokens).vocab_size))
    accelerator = Accelerator()
    model, _ = accelerator.prepare(model, _optimizer(model, cfg))
    accelerator.load_state(str(folder))
    progress = json.loads((folder / "progress.json").read_text())
    assert folder.name == f"step-{progress['step']:08d}"
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_identical_weights(real_tokens, tmp_path):
    reference = tmp_path / "straight"
    done = _run(_command(real_tokens, reference))
    assert done.returncode == 0, done.stderr[-3000:]
    loop_seconds = time.time() - (reference / "train_config.json").stat().st_mtime  # startup excluded

    run, rng, kills, log = tmp_path / "killed", random.Random(1234), 0, []
    # Once mid-write of a checkpoint (half of optimizer.bin written into the staging folder of step 8),
    # then at random moments, then once during the final export, after the last state folder is complete.
    plan = ["state-write"] + ["random"] * 4 + ["export"]
    for attempt, what in enumerate(plan):
        since = time.time()
        fault = {}
        if what == "state-write":
            fault = {"MUSICMHA_FAULT": "state-write:2", "MUSICMHA_FAULT_MARKER": str(tmp_path / f"hung-{attempt}")}
        elif what == "export":
            fault = {"MUSICMHA_FAULT": f"export:{STEPS}", "MUSICMHA_FAULT_MARKER": str(tmp_path / f"hung-{attempt}"),
                         "MUSICMHA_FAULT_RUN": str(run)}
        process = subprocess.Popen(_command(real_tokens, run, resume=True), env=_env(**fault),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if what == "random":
                _wait_for(_started(run, since), process, "training start")
                delay = rng.uniform(0.02, 0.15) * loop_seconds  # four of these stay short of the whole run
                # ... unless this machine trains faster now than it did for the reference (load from other
                # workers): then the kill comes early, before the run nears its end, so the export still waits
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and _newest_step(run) < STEPS - 2 * FLAGS["save_every"]:
                    time.sleep(0.01)
                log.append(f"random kill {delay:.2f} s into the loop")
            else:
                marker = Path(fault["MUSICMHA_FAULT_MARKER"])
                _wait_for(marker.exists, process, f"the {what} fault")
                log.append(f"kill during {what}")
            kills += _kill(process)
            log[-1] += f" (last complete state: {max(p.name for p in (run / 'state').glob('step-*'))})"
        finally:
            if process.poll() is None:
                process.kill()
            process.stderr.close()
        if what == "state-write":  # the kill left a half-written file in a staging folder, never a step-*
            staging = list((run / "state").glob(".step-*.tmp"))
            assert staging and (staging[0] / "optimizer.bin").is_file(), log
    assert kills >= 5, log
    print("kills:", json.dumps(log))

    done = _run(_command(real_tokens, run, resume=True))
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((run / "model" / "training.json").read_text())
    assert info["steps"] == STEPS, log
    a, b = _weights(reference / "model"), _weights(run / "model")
    assert all(torch.equal(a[k], b[k]) for k in a), log  # bit for bit
    states = sorted(p.name for p in (run / "state").iterdir())
    assert states == [f"step-{STEPS - 4:08d}", f"step-{STEPS:08d}"], states  # no staging folder left over
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    for folder in (run / "state").iterdir():
        _load_state(folder, real_tokens)


def _the_error_line(stderr: str) -> str:
    """The one line the command printed for the user (tqdm may still draw its bar after it)."""
    lines = [line for line in stderr.splitlines() if line.startswith("musicmha train: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def _limit_file_size(limit: int):
    def apply() -> None:  # in the child: writes past `limit` bytes fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_disk_full_is_one_line_and_keeps_the_previous_checkpoint(real_tokens, tmp_path):
    run = tmp_path / "run"
    assert _run(_command(real_tokens, run, max_steps=8)).returncode == 0
    before = (run / "state" / "step-00000008" / "model.safetensors").read_bytes()
    # Resume with files limited to 50 kB: train_config.json still fits, a checkpoint (~190 kB weights) not.
    done = _run(_command(real_tokens, run, max_steps=16, resume=True), preexec_fn=_limit_file_size(50_000))
    assert done.returncode == 2, done.stderr[-3000:]
    error = _the_error_line(done.stderr)
    assert error.startswith("musicmha train: error: cannot write") and str(run / "state") in error, error
    assert "File too large" in error, error
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (run / "state").iterdir()) == ["step-00000004", "step-00000008"]
    assert (run / "state" / "step-00000008" / "model.safetensors").read_bytes() == before
    _load_state(run / "state" / "step-00000008", real_tokens)
    done = _run(_command(real_tokens, run, max_steps=16, resume=True))  # space again: it carries on
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "model" / "training.json").read_text())["steps"] == 16


def _read_only(folder: Path):
    """Make `folder` refuse new entries for real: chmod for a normal user; root ignores modes, so there use
    the immutable attribute (chattr +i). Returns an undo function, or skips when neither works here."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available here: cannot make a folder read-only")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["state", "run"])
def test_read_only_folder_is_one_line_and_keeps_the_previous_checkpoint(real_tokens, tmp_path, which):
    run = tmp_path / "run"
    assert _run(_command(real_tokens, run, max_steps=8)).returncode == 0
    folder = run / "state" if which == "state" else run
    undo = _read_only(folder)
    try:
        probe = folder / "probe"
        with pytest.raises(OSError):
            probe.mkdir()  # really read-only, even for root
        done = _run(_command(real_tokens, run, max_steps=16, resume=True))
    finally:
        undo()
    assert done.returncode == 2, done.stderr[-3000:]
    error = _the_error_line(done.stderr)
    assert error.startswith("musicmha train: error: cannot write") and str(folder) in error, error
    assert "ermission denied" in error or "ot permitted" in error, error
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (run / "state").iterdir()) == ["step-00000004", "step-00000008"]
    _load_state(run / "state" / "step-00000008", real_tokens)


class _InfiniteGradient(torch.autograd.Function):
    """The identity going forward, an infinite gradient going back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


def _poison(monkeypatch, at_call: int, where: str) -> None:
    """Make the loss (or, with a finite loss, every gradient) non-finite from the `at_call`-th training
    forward pass on."""
    original, calls = MusicTransformer.forward, [0]

    def forward(self, *args, **kwargs):
        logits, loss = original(self, *args, **kwargs)
        calls[0] += self.training
        if self.training and calls[0] >= at_call and loss is not None:
            loss = loss * float("nan") if where == "loss" else _InfiniteGradient.apply(loss)
        return logits, loss

    monkeypatch.setattr(MusicTransformer, "forward", forward)


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_non_finite_values_are_never_saved(real_tokens, tmp_path, monkeypatch, where):
    _poison(monkeypatch, at_call=7, where=where)  # grad_accum 1: call 7 is step 7
    cfg = TrainConfig.from_sources(data=str(real_tokens), out=str(tmp_path / "run"),
                                   **{**FLAGS, "grad_accum": 1, "dropout": 0.0, "save_every": 1,
                                      "keep_last": 100, "max_steps": 12})
    with pytest.raises(TrainingError, match=f"non-finite {where} at step 7"):
        train(cfg)
    states = sorted((tmp_path / "run" / "state").iterdir())
    assert [p.name for p in states] == [f"step-{i:08d}" for i in range(1, 7)]  # nothing from step 7 on
    for folder in states:
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for t in load_file(folder / "model.safetensors").values())
    assert json.loads((tmp_path / "run" / "model" / "training.json").read_text())["steps"] == 6
    assert all(torch.isfinite(t).all() for t in _weights(tmp_path / "run" / "model").values())
