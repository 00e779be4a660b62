"""Run mutated MIDI cases through prepare, generate and the app's upload handler, in worker processes with
a memory limit (RLIMIT_AS) and a time limit per case, so a hang or a blow-up is caught, not suffered.

The parent sends case names to a worker and waits for one JSON line per case; a case that takes longer
than the limit, or a worker that dies, is recorded as a failure of that case and a fresh worker carries on
with the next. `python tests/midi_fuzz.py --per-family 80` runs the fuzz by hand and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ENTRIES = ("prepare", "generate", "app")


def _burn() -> None:
    while True:
        pass


# Cases that misbehave on purpose: a hang, a crash and an allocation past the memory limit.
SELFTEST = {"selftest_hang": _burn, "selftest_crash": os.abort,
            "selftest_memory": lambda: bytearray((_limits["mem_mb"] + 256) * 2**20)}
_limits: dict[str, int] = {}


# --- worker side ------------------------------------------------------------------------------------------
def _one_line(message: str) -> bool:
    return bool(message.strip()) and "\n" not in message and len(message) < 500


def _ours(message: str) -> str:
    return f"ours: {message}" if _one_line(message) else f"FAIL: multi-line or empty message {message!r:.300}"


def _worker(mem_mb: int, generate_every: int, fluidsynth_every: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(HERE))
    import logging

    import gradio as gr
    import torch

    import midi_mutations as mm
    from datafiles import PROMPTS
    from musicmha.data import augment, prepare
    from musicmha.render import audio as render
    from app_helpers import wav_samples
    from musicmha.app import history
    from musicmha.app.handlers import AppConfig, Handlers, new_session
    from musicmha.app.service import TempFiles
    from musicmha.nn.config import ModelConfig
    from musicmha.errors import MusicmhaError
    from musicmha.generation.music_generator import MusicGenerator
    from musicmha.nn.model import MusicTransformer
    from musicmha.data.tokenizer import MusicTokenizer

    logging.disable(logging.WARNING)  # clipped renders and fallbacks log warnings: expected here
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sources = {p.name: p.read_bytes() for p in PROMPTS}
    tmp = Path(tempfile.mkdtemp(prefix="musicmha-fuzz-"))
    tok = MusicTokenizer.from_config()
    generator = MusicGenerator(MusicTransformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1,
                                                            n_heads=2, max_seq_len=256, dropout=0.0)), tok)
    # prepare's own worker initializer, with augmentation on: the train split's path is the longest.
    prepare._init_worker(str(tok.save(tmp / "tok")), augment.AugmentConfig(transpose=(-2, 3), tempo=(0.5,)),
                         0, prepare.MAX_BYTES)
    handlers = Handlers(AppConfig(checkpoints=[], checkpoint=None, examples={}, files=TempFiles(tmp / "files")))
    real_fluidsynth = render.fluidsynth_command
    # The limit counts from what the imports already mapped: the budget is for the cases.
    base = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (base + mem_mb * 2**20, base + mem_mb * 2**20))
    _limits["mem_mb"] = mem_mb
    print(json.dumps({"ready": True}), flush=True)

    for line in sys.stdin:
        family, source, seed = line.strip().rsplit(":", 2)
        if family in SELFTEST:  # proves the harness catches what it claims to catch
            SELFTEST[family]()
        case = mm.Case(family, "" if source == "-" else source, int(seed))
        started, cpu_started = time.perf_counter(), time.process_time()
        data = mm.make_case(case, sources)
        path = tmp / "case.mid"
        path.write_bytes(data)
        outcome = {}
        try:
            _, _, result = prepare._tokenize((str(path), "case.mid", "train"))
            if isinstance(result, str):
                outcome["prepare"] = ("FAIL: " if result.startswith("tokenization failed") else "ours: ") + result
            elif all(len(ids) > 2 and int(ids.max()) < tok.vocab_size for _, ids in result):
                outcome["prepare"] = "valid"
            else:
                outcome["prepare"] = "FAIL: empty or out-of-vocabulary token sequence"
        except Exception as error:
            outcome["prepare"] = f"FAIL: {type(error).__name__}: {error!s:.300}"
        try:
            new = 8 if case.seed % generate_every == 0 else 1
            (res,) = generator.continue_midi(str(path), max_new_tokens=new, seed=case.seed)
            res.score.dumps_midi()  # the result must be writable
            outcome["generate"] = "valid"
        except MusicmhaError as error:
            outcome["generate"] = _ours(str(error))
        except Exception as error:
            outcome["generate"] = f"FAIL: {type(error).__name__}: {error!s:.300}"
        try:
            # FluidSynth (~0.3 s a file) for some cases, the numpy synthesizer (~0.04 s) for the others.
            render.fluidsynth_command = real_fluidsynth if case.seed % fluidsynth_every == 0 else lambda: None
            data, _ = handlers.read_prompt(str(path))  # gr.Error (one line) when the upload is refused
            _, audio, roll, *_ = handlers.show(history.push(new_session(), data, path.stem))
            ok = wav_samples(audio).size > 0 and "<img" in roll
            outcome["app"] = "valid" if ok else "FAIL: empty preview"
        except gr.Error as error:
            outcome["app"] = _ours(str(error.message))
        except Exception as error:
            outcome["app"] = f"FAIL: {type(error).__name__}: {error!s:.300}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(json.dumps({"case": case.name, "bytes": len(data), "seconds": time.perf_counter() - started,
                          "cpu_seconds": time.process_time() - cpu_started,
                          "rss_mb": rss, **outcome}), flush=True)


# --- parent side ------------------------------------------------------------------------------------------
class _Worker:
    """One worker process fed a queue of case names, with the clock of the case it is working on."""

    def __init__(self, args: list[str], names: list[str]) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")  # the worker's stderr, quoted when it dies
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.pending, self.buffer, self.ready = list(names), "", False
        self.process = psutil.Process(self.proc.pid)
        self.restart_clock(180.0)  # imports (torch, gradio, miditok) on a busy machine
        self.proc.stdin.write("".join(n + "\n" for n in names))  # a few kB: fits the pipe
        self.proc.stdin.close()

    def cpu(self) -> float:
        try:
            times = self.process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    def restart_clock(self, cpu_limit: float) -> None:
        """A new case starts: it may use `cpu_limit` CPU seconds, and (for hangs that sleep) ten times
        that in wall time. CPU time, so a machine loaded by other jobs does not turn slow cases into
        failures."""
        self.cpu_deadline = self.cpu() + cpu_limit
        self.wall_deadline = time.monotonic() + 10 * cpu_limit

    def overdue(self) -> bool:
        return time.monotonic() > self.wall_deadline or self.cpu() > self.cpu_deadline

    def lines(self) -> list[str]:
        """Complete lines available now; an empty string marks the end of output."""
        chunk = os.read(self.proc.stdout.fileno(), 65536).decode()
        if not chunk:
            return [""]
        self.buffer += chunk
        *done, self.buffer = self.buffer.split("\n")
        return done

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def last_words(self) -> str:
        self.log.seek(0)
        lines = [line.strip() for line in self.log.read().splitlines() if line.strip()]
        return lines[-1][:300] if lines else "no output"


def run(names: list[str], *, workers: int = 2, time_limit: float = 10.0, mem_mb: int = 1536,
        generate_every: int = 10, fluidsynth_every: int = 20, progress: bool = False) -> list[dict]:
    """Every case's outcome per entry point, in input order; hangs and crashes are outcomes too."""
    args = ["--mem-mb", str(mem_mb), "--generate-every", str(generate_every),
            "--fluidsynth-every", str(fluidsynth_every)]
    pool = [_Worker(args, names[i::workers]) for i in range(workers) if names[i::workers]]
    results: dict[str, dict] = {}

    def blame(w: _Worker, what: str) -> _Worker | None:
        """Record the case in progress as a failure; a fresh worker takes the rest of the queue."""
        w.kill()
        if not w.ready:
            raise RuntimeError(f"fuzz worker did not start ({what})")
        culprit = w.pending.pop(0)
        results[culprit] = {"case": culprit, "bytes": None, "seconds": time_limit, "cpu_seconds": time_limit,
                            "rss_mb": None,
                            **{e: f"FAIL: {what}" for e in ENTRIES}}
        return _Worker(args, w.pending) if w.pending else None

    while pool:
        readable = select.select([w.proc.stdout for w in pool], [], [], 0.25)[0]
        for i, w in enumerate(list(pool)):
            replacement: _Worker | None = w
            if w.proc.stdout in readable:
                for line in w.lines():
                    if not line:
                        w.proc.wait()
                        replacement = blame(w, f"worker died (exit {w.proc.returncode}: {w.last_words()})") \
                            if w.pending else None
                        break
                    record = json.loads(line)
                    w.restart_clock(time_limit)
                    if record.get("ready"):
                        w.ready = True
                        continue
                    results[record["case"]] = record
                    w.pending.remove(record["case"])
                    if progress and len(results) % 100 == 0:
                        print(f"{len(results)} of {len(names)} cases", file=sys.stderr, flush=True)
                if replacement is w and not w.pending:
                    w.kill()
                    replacement = None
            elif w.overdue():
                replacement = blame(w, f"hang (> {time_limit:g} CPU s)")
            pool[pool.index(w)] = replacement
        pool = [w for w in pool if w is not None]
    return [results[n] for n in names]


def kind(outcome: str) -> str:
    """A message's kind for the figures: no file name, numbers or details."""
    if not outcome.startswith("ours: "):
        return outcome.split(":")[0]
    message = outcome[6:]
    message = re.sub(r"^\S+\.mid: ", "", message)  # the app names the upload
    return re.sub(r"\d[\d,.]*", "N", message.split(": ")[0].split(" (")[0])


def failures(records: list[dict]) -> list[str]:
    return [f"{r['case']} [{e}] {r[e]}" for r in records for e in ENTRIES if r[e].startswith("FAIL")]


def summary(records: list[dict]) -> dict:
    families = Counter(r["case"].split(":")[0] for r in records)
    outcomes = {e: Counter("valid" if r[e] == "valid" else kind(r[e]) for r in records) for e in ENTRIES}
    slowest = max(records, key=lambda r: r["cpu_seconds"])
    by_family: dict[str, dict[str, int]] = {}
    for r in records:  # valid results per entry point, and cases refused with one of our errors
        counts = by_family.setdefault(r["case"].split(":")[0], Counter())
        counts.update(e for e in ENTRIES if r[e] == "valid")
        counts.update(f"{e} refused" for e in ENTRIES if r[e].startswith("ours: "))
    return {"cases": len(records), "families": dict(families), "by_family": {f: dict(c) for f, c in by_family.items()}, "outcomes": {e: dict(c) for e, c in outcomes.items()},
            "slowest": {"case": slowest["case"], "cpu_seconds": round(slowest["cpu_seconds"], 2),
                        "seconds": round(slowest["seconds"], 2)},
            "cpu_seconds_total": round(sum(r["cpu_seconds"] for r in records), 1),
            "peak_rss_mb": max(r["rss_mb"] or 0 for r in records), "failures": failures(records)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--per-family", type=int, default=80)
    parser.add_argument("--family", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--mem-mb", type=int, default=1536)
    parser.add_argument("--generate-every", type=int, default=10)
    parser.add_argument("--fluidsynth-every", type=int, default=20)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.mem_mb, args.generate_every, args.fluidsynth_every)
    sys.path.insert(0, str(HERE))
    import midi_mutations as mm
    from datafiles import PROMPTS

    cases = [c.name for c in mm.all_cases([p.name for p in PROMPTS], args.per_family)
             if args.family in (None, c.family)]
    started = time.perf_counter()
    records = run(cases, workers=args.workers, time_limit=args.time_limit, mem_mb=args.mem_mb,
                  generate_every=args.generate_every, fluidsynth_every=args.fluidsynth_every, progress=True)
    print(json.dumps({**summary(records), "wall_seconds": round(time.perf_counter() - started, 1)}, indent=1))


if __name__ == "__main__":
    main()
