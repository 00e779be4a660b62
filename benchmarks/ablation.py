"""Position-mode ablation at equal budget: train relative | rope | alibi | none, then test NLL and length generalization.

    python benchmarks/ablation.py --data /tmp/tokens-full --out /tmp/ablation --steps 2000 --seeds 0,1,2,3

Every run uses the same data, steps, model size, batch and seed list; only `--position` changes. Trainings run
as `musicmha train` subprocesses (at most --jobs at once, each with OMP_NUM_THREADS=1); a run whose exported
model already has the requested number of steps is not trained again, so the script can be re-run to finish
or to re-print the tables. Evaluation uses `musicmha eval --json` on the whole test split:
- at the training length (windows of max_seq_len tokens): the test NLL of each model;
- at --length-factor x the training length (default 2: windows of 256 for models trained at 128): NLL per
  position bucket. position="none" has learned absolute positions only up to max_seq_len, so it cannot read
  past the training length and its row reads "n/a" there.
Results go to OUT/results.json; the tables are printed as Markdown.

Longer contexts and other shapes: --max-seq-len/--d-model/--n-layers/--batch-size override the shared
configuration (the same for every run). --fim-rates 0,0.2,0.5 adds fill-in-the-middle variants of every
position (run "relative-fim0.2-seed0"), evaluated left to right like the others and, with --infill-pieces,
by benchmarks/infill_eval.py (middle bars scored with both sides vs the left side only).
--equal-time also trains every position for the steps it makes in the wall time the fastest position needs
for --steps (run "rope-time-seed0"), from speeds measured side by side in this process (bench_train's step,
round robin) before any training: the shared machine's load during the runs does not enter.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

POSITIONS = ("relative", "rope", "alibi", "none")
# The reduced shared configuration (a 2-core CPU); everything but --position and --seed is the same.
SHARED = {"preset": "small", "d_model": 128, "n_layers": 2, "n_heads": 4, "max_seq_len": 128, "batch_size": 16,
          "dropout": 0.1, "learning_rate": 1e-3, "warmup_steps": 100, "eval_batches": 8, "log_every": 50}


@dataclass(frozen=True)
class Run:
    """One training of the ablation: a position mode, a seed, a FIM rate and a number of steps."""
    position: str
    seed: int
    steps: int
    fim_rate: float = 0.0
    timed: bool = False  # an equal-wall-time run: `steps` is what this mode makes in the fastest mode's time

    @property
    def variant(self) -> str:
        return f"{self.position}{f'-fim{self.fim_rate:g}' if self.fim_rate else ''}{'-time' if self.timed else ''}"

    @property
    def name(self) -> str:
        return f"{self.variant}-seed{self.seed}"


def _flags(options: dict) -> list[str]:
    return [item for name, value in options.items() for item in ("--" + name.replace("_", "-"), str(value))]


def _trained_steps(run: Path) -> int | None:
    info = run / "model" / "training.json"
    return json.loads(info.read_text())["steps"] if info.is_file() else None


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def measure_speeds(shared: dict, positions: list[str], steps: int = 3, rounds: int = 2) -> dict[str, float]:
    """Training tokens/s of each position at the shared shape, one thread, timed round robin in this process
    (benchmarks/bench_train.py's full step, common.make_step), so every mode meets the same machine load."""
    import torch
    from common import make_step

    from musicmha import ModelConfig

    torch.set_num_threads(1)
    shape = {k: shared[k] for k in ("d_model", "n_layers", "n_heads", "max_seq_len", "dropout")}
    step_fns = {p: make_step(ModelConfig(vocab_size=530, position=p, **shape), shared["batch_size"], "cpu", "fp32",
                             "foreach")[0] for p in positions}
    seconds = dict.fromkeys(positions, 0.0)
    for _ in range(rounds):
        for position, step in step_fns.items():
            started = time.perf_counter()
            for _ in range(steps):
                step()
            seconds[position] += time.perf_counter() - started
    tokens = shared["batch_size"] * shared["max_seq_len"] * steps * rounds
    return {p: tokens / seconds[p] for p in positions}


def plan_runs(args: argparse.Namespace, speeds: dict[str, float] | None) -> list[Run]:
    """Seed by seed (a cut-short session has whole seeds): every position at every FIM rate for --steps, then
    the equal-time runs of the positions slower than the fastest."""
    runs = []
    for seed in args.seed_list:
        runs += [Run(p, seed, args.steps, rate) for rate in args.fim_list for p in args.position_list]
        if speeds:
            fastest = max(speeds.values())
            timed = {p: round(args.steps * speeds[p] / fastest) for p in args.position_list}
            runs += [Run(p, seed, steps, timed=True) for p, steps in timed.items() if steps != args.steps]
    return runs


def train_all(args: argparse.Namespace, runs: list[Run]) -> None:
    """Run the missing trainings, at most args.jobs at a time; each logs to RUN.log."""
    todo = [r for r in runs if _trained_steps(args.out / r.name) != r.steps]
    running: list[tuple[subprocess.Popen, str, float]] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            r = todo.pop(0)
            folder = args.out / r.name
            resume = ["--resume"] if (folder / "state").is_dir() else []
            command = [sys.executable, "-m", "musicmha", "train", "--data", str(args.data), "--out", str(folder),
                       *_flags(args.shared), "--position", r.position, "--seed", str(r.seed), "--fim-rate",
                       str(r.fim_rate), "--max-steps", str(r.steps), "--save-every", str(args.save_every or r.steps),
                       "--eval-every", str(r.steps), *resume]
            log = open(f"{folder}.log", "w")  # noqa: SIM115 - closed when the process ends
            print(f"train {r.name}: {' '.join(command[1:])}", flush=True)
            running.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env()),
                            r.name, time.perf_counter()))
        time.sleep(2)
        for proc, name, started in list(running):
            if proc.poll() is not None:
                running.remove((proc, name, started))
                if proc.returncode:
                    raise SystemExit(f"training {name} failed (exit {proc.returncode}): see {args.out / name}.log")
                print(f"trained {name} in {time.perf_counter() - started:.0f} s", flush=True)


def _eval(model: Path, data: Path, window: int, max_pieces: int | None) -> dict:
    command = [sys.executable, "-m", "musicmha", "eval", "--checkpoint", str(model), "--data", str(data),
               "--split", "test", "--window", str(window), "--batch-size", "16", "--json"]
    command += ["--max-pieces", str(max_pieces)] if max_pieces else []
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout)


def _infill(model: Path, data: Path, pieces: int, out: Path) -> dict:
    """benchmarks/infill_eval.py on the test split: NLL of the middle with both sides and with the left only."""
    command = [sys.executable, str(Path(__file__).with_name("infill_eval.py")), "--checkpoint", str(model),
               "--data", str(data), "--pieces", str(pieces), "--bars", "1,2,4", "--threads", "1", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    rows = json.loads(out.read_text())["rows"]
    tokens = sum(r["tokens"] for r in rows)
    if not tokens:
        return {"error": "no test range fits the context"}
    return {"ranges": len(rows), "tokens": tokens, "both": sum(r["both"] for r in rows) / tokens,
            "left": sum(r["left"] for r in rows) / tokens}


def evaluate_all(args: argparse.Namespace, runs: list[Run]) -> dict:
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    seq_len = args.shared["max_seq_len"]
    for r in runs:
        folder = args.out / r.name
        entry = results.get(r.name, {})
        wants_infill = bool(r.fim_rate or args.fim_list != [0.0]) and args.infill_pieces > 0
        if (entry.get("steps") == r.steps and "long" in entry and "short" in entry
                and (not wants_infill or "infill" in entry)):
            continue
        info = json.loads((folder / "model" / "training.json").read_text())
        if entry.get("steps") != info["steps"]:  # a longer run replaced this one: evaluate it again
            entry = {}
        entry.update({"position": r.position, "seed": r.seed, "fim_rate": r.fim_rate, "timed": r.timed,
                      "steps": info["steps"], "tokens_seen": info["tokens_seen"],
                      "final_train_loss": info["final_train_loss"],
                      "final_validation_nll": info["final_validation_nll"]})
        started = time.perf_counter()
        for key, window in (("short", seq_len), ("long", seq_len * args.length_factor)):
            if key not in entry or "error" in entry[key]:
                entry[key] = _eval(folder / "model", args.data, window, args.eval_pieces)
        if wants_infill:
            entry["infill"] = _infill(folder / "model", args.data, args.infill_pieces, args.out / f"{r.name}.infill.json")
        print(f"evaluated {r.name} in {time.perf_counter() - started:.0f} s", flush=True)
        results[r.name] = entry
        results_path.write_text(json.dumps(results, indent=1) + "\n")
    return results


def _buckets(curve: list[float] | None, edges: list[int]) -> list[float | None]:
    """Mean of the per-position NLL curve over [edges[i], edges[i+1]) (the curve weights each position
    equally; positions are nearly equally populated because most windows are full)."""
    if not curve:
        return [None] * (len(edges) - 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        part = curve[lo:hi]
        out.append(sum(part) / len(part) if part else None)
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _mean_sd(values: list[float | None]) -> str:
    have = [v for v in values if v is not None]
    if not have:
        return "n/a"
    return _fmt(statistics.mean(have)) + (f" ± {statistics.stdev(have):.4f}" if len(have) > 1 else "")


def tables(results: dict, runs: list[Run], seeds: list[int], shared: dict, length_factor: int) -> str:
    seq_len = shared["max_seq_len"]
    variants = list(dict.fromkeys(r.variant for r in runs))
    steps = {r.variant: r.steps for r in runs}
    lines = [(f"| run | steps | {' | '.join(f'test NLL seed {s}' for s in seeds)} | mean ± sd over seeds | "
              f"test NLL at {length_factor}x length (window {seq_len * length_factor}), mean |"),
             "|---|---:|" + "---:|" * (len(seeds) + 2)]
    for variant in variants:
        entries = [results.get(f"{variant}-seed{s}", {}) for s in seeds]
        short = [e.get("short", {}).get("nll") for e in entries]
        long = [e.get("long", {}).get("nll") for e in entries]
        if all(v is None for v in short):
            continue
        lines.append(f"| {variant} | {steps[variant]:,} | {' | '.join(_fmt(v) for v in short)} | {_mean_sd(short)} | "
                     f"{_mean_sd(long).split(' ±')[0]} |")
    infill = [(v, [results.get(f"{v}-seed{s}", {}).get("infill") for s in seeds]) for v in variants]
    infill = [(v, [e for e in es if e and "error" not in e]) for v, es in infill]
    if any(es for _, es in infill):
        lines += ["", "Infill (benchmarks/infill_eval.py, middles of 1, 2 and 4 bars): NLL of the true middle "
                      "given both sides vs the left side only, mean over seeds:", "",
                  "| run | ranges per seed | NLL both sides | NLL left only | gain (left − both) |", "|---|---:|---:|---:|---:|"]
        for variant, es in infill:
            if es:
                both, left = statistics.mean(e["both"] for e in es), statistics.mean(e["left"] for e in es)
                lines.append(f"| {variant} | {es[0]['ranges']} | {both:.4f} | {left:.4f} | {left - both:+.4f} |")
    width = seq_len // 2
    edges = list(range(0, seq_len * length_factor + 1, width))
    names = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    lines += ["", (f"NLL by position inside windows of {seq_len * length_factor} tokens (trained at {seq_len}; "
                   "mean over seeds; positions past the training length are beyond anything seen in training):"), "",
              f"| run | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for variant in variants:
        rows = []
        for s in seeds:
            entry = results.get(f"{variant}-seed{s}", {})
            long = entry.get("long", {})
            curve = long.get("nll_by_position") if "error" not in long else None
            if curve is None and "short" in entry:  # "none": only the positions it can read
                curve = entry["short"].get("nll_by_position")
            if curve is not None:
                rows.append(_buckets(curve, edges))
        if not rows:
            continue
        means = [None if any(r[i] is None for r in rows) else sum(r[i] for r in rows) / len(rows)
                 for i in range(len(names))]
        lines.append(f"| {variant} | {' | '.join(_fmt(v) for v in means)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared token folder")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ablation"), help="run folders and results.json")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--positions", default=",".join(POSITIONS))
    parser.add_argument("--fim-rates", default="0", help="FIM rates trained for every position, e.g. 0,0.2,0.5")
    parser.add_argument("--equal-time", action="store_true", help="also train each mode for the fastest's wall time")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (each one thread)")
    parser.add_argument("--length-factor", type=int, default=2)
    parser.add_argument("--eval-pieces", type=int, default=None, help="first N test pieces only (default all)")
    parser.add_argument("--infill-pieces", type=int, default=30, help="infill_eval ranges per bar count (FIM runs)")
    parser.add_argument("--save-every", type=int, default=None, help="checkpoints during a run (default: at the end)")
    for name in ("max_seq_len", "d_model", "n_layers", "batch_size"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=SHARED[name])
    parser.add_argument("--skip-train", action="store_true", help="only evaluate runs that exist")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.shared = {**SHARED, **{k: getattr(args, k) for k in ("max_seq_len", "d_model", "n_layers", "batch_size")}}
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.position_list = args.positions.split(",")
    args.fim_list = [float(r) for r in args.fim_rates.split(",")]
    speeds = None
    if args.equal_time:
        speeds_path = args.out / "speeds.json"  # measured once: re-runs plan the same equal-time steps
        if not speeds_path.is_file():
            speeds_path.write_text(json.dumps(measure_speeds(args.shared, args.position_list), indent=1) + "\n")
        speeds = json.loads(speeds_path.read_text())
        print("training tokens/s, one thread, side by side: "
              + ", ".join(f"{p} {v:,.0f}" for p, v in speeds.items()), flush=True)
    runs = plan_runs(args, speeds)
    if not args.skip_train:
        train_all(args, runs)
    runs = [r for r in runs if _trained_steps(args.out / r.name) == r.steps]
    results = evaluate_all(args, runs)
    print()
    print(f"config: {json.dumps(args.shared)}, steps {args.steps}, seeds {args.seed_list}, FIM rates {args.fim_list}")
    print(tables(results, runs, args.seed_list, args.shared, args.length_factor))


if __name__ == "__main__":
    main()
