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
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

POSITIONS = ("relative", "rope", "alibi", "none")
# The reduced shared configuration (a 2-core CPU); everything but --position and --seed is the same.
SHARED = {"preset": "small", "d_model": 128, "n_layers": 2, "n_heads": 4, "max_seq_len": 128, "batch_size": 16,
          "dropout": 0.1, "learning_rate": 1e-3, "warmup_steps": 100, "eval_batches": 8, "log_every": 50}


def _flags(options: dict) -> list[str]:
    return [item for name, value in options.items() for item in ("--" + name.replace("_", "-"), str(value))]


def _run_dir(out: Path, position: str, seed: int) -> Path:
    return out / f"{position}-seed{seed}"


def _trained_steps(run: Path) -> int | None:
    info = run / "model" / "training.json"
    return json.loads(info.read_text())["steps"] if info.is_file() else None


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def train_all(args: argparse.Namespace, runs: list[tuple[str, int]]) -> None:
    """Run the missing trainings, at most args.jobs at a time; each logs to RUN.log."""
    todo = [(p, s) for p, s in runs if _trained_steps(_run_dir(args.out, p, s)) != args.steps]
    running: list[tuple[subprocess.Popen, str, float]] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            position, seed = todo.pop(0)
            run = _run_dir(args.out, position, seed)
            resume = ["--resume"] if (run / "state").is_dir() else []
            command = [sys.executable, "-m", "musicmha", "train", "--data", str(args.data), "--out", str(run),
                       *_flags(SHARED), "--position", position, "--seed", str(seed), "--max-steps",
                       str(args.steps), "--save-every", str(args.steps), "--eval-every", str(args.steps), *resume]
            log = open(f"{run}.log", "w")  # noqa: SIM115 - closed when the process ends
            print(f"train {run.name}: {' '.join(command[1:])}", flush=True)
            running.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env()),
                            run.name, time.perf_counter()))
        time.sleep(2)
        for proc, name, started in list(running):
            if proc.poll() is not None:
                running.remove((proc, name, started))
                if proc.returncode:
                    raise SystemExit(f"training {name} failed (exit {proc.returncode}): see {args.out / name}.log")
                print(f"trained {name} in {time.perf_counter() - started:.0f} s", flush=True)


def _eval(model: Path, data: Path, window: int) -> dict:
    command = [sys.executable, "-m", "musicmha", "eval", "--checkpoint", str(model), "--data", str(data),
               "--split", "test", "--window", str(window), "--batch-size", "16", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout)


def evaluate_all(args: argparse.Namespace, runs: list[tuple[str, int]]) -> dict:
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    seq_len = SHARED["max_seq_len"]
    for position, seed in runs:
        run = _run_dir(args.out, position, seed)
        key = run.name
        entry = results.get(key, {})
        if entry.get("steps") == args.steps and "long" in entry and "short" in entry:
            continue
        info = json.loads((run / "model" / "training.json").read_text())
        entry = {"position": position, "seed": seed, "steps": info["steps"], "tokens_seen": info["tokens_seen"],
                 "final_train_loss": info["final_train_loss"], "final_validation_nll": info["final_validation_nll"]}
        started = time.perf_counter()
        entry["short"] = _eval(run / "model", args.data, seq_len)
        entry["long"] = _eval(run / "model", args.data, seq_len * args.length_factor)
        print(f"evaluated {key} in {time.perf_counter() - started:.0f} s", flush=True)
        results[key] = entry
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


def tables(results: dict, runs: list[tuple[str, int]], seeds: list[int], length_factor: int) -> str:
    import statistics

    seq_len = SHARED["max_seq_len"]
    lines = [(f"| position | {' | '.join(f'test NLL seed {s}' for s in seeds)} | mean ± sd over seeds | "
              f"test NLL at {length_factor}x length (window {seq_len * length_factor}), mean |"),
             "|---|" + "---:|" * (len(seeds) + 2)]
    for position in POSITIONS:
        short = [results.get(f"{position}-seed{s}", {}).get("short", {}).get("nll") for s in seeds]
        long = [results.get(f"{position}-seed{s}", {}).get("long", {}).get("nll") for s in seeds]
        if all(v is None for v in short):
            continue
        have = [v for v in short if v is not None]
        have_long = [v for v in long if v is not None]
        spread = f" ± {statistics.stdev(have):.4f}" if len(have) > 1 else ""
        lines.append(f"| {position} | {' | '.join(_fmt(v) for v in short)} | {_fmt(statistics.mean(have))}{spread} | "
                     f"{_fmt(statistics.mean(have_long) if have_long else None)} |")
    width = seq_len // 2
    edges = list(range(0, seq_len * length_factor + 1, width))
    names = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    lines += ["", (f"NLL by position inside windows of {seq_len * length_factor} tokens (trained at {seq_len}; "
                   "mean over seeds; positions past the training length are beyond anything seen in training):"), "",
              f"| position | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for position in POSITIONS:
        rows = []
        for s in seeds:
            entry = results.get(f"{position}-seed{s}", {})
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
        lines.append(f"| {position} | {' | '.join(_fmt(v) for v in means)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared token folder")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ablation"), help="run folders and results.json")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--positions", default=",".join(POSITIONS))
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (each one thread)")
    parser.add_argument("--length-factor", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true", help="only evaluate runs that exist")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    positions = args.positions.split(",")
    runs = [(p, s) for s in seeds for p in positions]  # seed by seed: a cut-short session has whole seeds
    if not args.skip_train:
        train_all(args, runs)
    runs = [(p, s) for p, s in runs if _trained_steps(_run_dir(args.out, p, s)) == args.steps]
    results = evaluate_all(args, runs)
    print()
    print(f"config: {json.dumps(SHARED)}, steps {args.steps}, seeds {seeds}")
    print(tables(results, runs, seeds, args.length_factor))


if __name__ == "__main__":
    main()
