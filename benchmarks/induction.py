"""Can our attention learn to copy? Synthetic copy tasks for every position mode and attention backend (issue 26).

    python benchmarks/induction.py --tasks xx --steps 300 --batch 64 --length 32 --vocab 64 --out induction.json
    python benchmarks/induction.py --tasks far --segment 24 --d-model 256 --n-layers 4 --n-heads 4 --steps 1500
    python benchmarks/induction.py --tasks far --modes relative --backends blocked --vocab 128 --row-length 512 \
        --segment 32 --max-distance 480 --copies 6 --train-on all --warmup-steps 60 --warmup-kind xx

Each (mode, backend, task) trains a fresh model (`ModelConfig` + `MusicTransformer`, seeded alike) with plain
AdamW on fresh random rows (musicmha/evaluation/induction.py: "xx" rows x;x of L tokens, loss on the second
half; "far" a segment of S tokens copied at a distance drawn from [--min-distance, --max-distance], loss on
the copy's tokens after its first --skip). The copy loss is measured on one held-out batch every
--eval-every steps. The table gives the first evaluated step under --threshold ("not in N" when none is),
the final copy loss, the final loss on the other (random) targets and the training speed; --out keeps every
curve. --copies N copies N segments per "far" row; --warmup-steps N trains the first N of --steps on
--warmup-kind rows of the same length ("xx": x;x with L = half the row) before the task itself. A model that cannot copy stays at
ln(vocab) (4.16 for 64 tokens).

Backends: the relative mode runs each of its kernels usable on the device ("sdpa" and "blocked" on the CPU,
"flex" too on CUDA); the other modes have no kernel of their own and run "sdpa".
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

from musicmha import ModelConfig, MusicTransformer
from musicmha.evaluation.induction import TASKS, TRAIN_ON, CopyTask, train_copy
from musicmha.nn.config import POSITION_MODES
from musicmha.nn.positions import position_scheme_type


def usable_backends(mode: str, device: str) -> list[str]:
    """The backends that differ for `mode` on `device`: FlexAttention's backward needs CUDA."""
    if not position_scheme_type(mode).has_fast_kernel:
        return ["sdpa"]
    return ["sdpa", "blocked", *(["flex"] if torch.device(device).type == "cuda" else [])]


def cpu_name() -> str:
    """The CPU's model name as lscpu gives it (for the record: timings belong to a machine)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        platform.machine())
    except OSError:
        return platform.processor() or platform.machine()


def task_of(kind: str, args) -> CopyTask:
    if kind == "xx":
        return CopyTask("xx", args.vocab, args.length)
    row = args.row_length or args.max_distance + args.segment
    return CopyTask("far", args.vocab, row, segment=args.segment, min_distance=args.min_distance,
                    max_distance=args.max_distance, skip=args.skip, copies=args.copies)


def warmup_of(args, task: CopyTask) -> CopyTask | None:
    """The warm-up task: rows as long as the task's (x;x with L half of them, or "far" as the task)."""
    if not args.warmup_steps:
        return None
    if args.warmup_kind == "xx":
        if task.row_length % 2:
            raise ValueError(f"an xx warm-up needs an even row length, got {task.row_length}")
        return CopyTask("xx", task.vocab, task.row_length // 2)
    return task


def run_one(args, mode: str, backend: str, task: CopyTask) -> dict:
    torch.manual_seed(args.seed)  # every mode starts from the same draws
    extra = {"relative_buckets": args.relative_buckets} if args.relative_buckets else {}
    if args.previous_tokens:
        extra["previous_tokens"] = args.previous_tokens
    config = ModelConfig(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                         d_ff=args.d_ff, dropout=args.dropout, max_seq_len=task.row_length - 1, position=mode,
                         attention_backend=backend, **extra)
    model = MusicTransformer(config).to(args.device)
    size = f"d{args.d_model}×{args.n_layers}L×{args.n_heads}h" + (f" +prev{args.previous_tokens}" if args.previous_tokens else "")
    label = f"{mode}/{backend}/{task.kind}"

    def progress(step: int, loss: float) -> None:
        print(f"  {label} step {step:5d}: copy loss {loss:.4f}", flush=True)

    started = time.perf_counter()
    run = train_copy(model, task, args.steps, batch=args.batch, lr=args.lr, eval_every=args.eval_every,
                     eval_rows=args.eval_rows, seed=args.seed, train_on=args.train_on,
                     stop_below=args.threshold if args.stop_early else None, on_eval=progress,
                     warmup=warmup_of(args, task), warmup_steps=args.warmup_steps,
                     copy_weight=args.copy_weight, min_match=args.min_match)
    return {"mode": mode, "backend": backend, "task": task.kind, "size": size,
            "parameters": model.num_parameters(), "steps_to_threshold": run.steps_to(args.threshold),
            "steps_to_0.5": run.steps_to(0.5), "final_copy_loss": run.curve[-1][1],
            "final_other_loss": run.other_curve[-1][1], "steps_run": run.curve[-1][0],
            "tokens_per_second": run.tokens_per_second, "wall_seconds": time.perf_counter() - started,
            "curve": run.curve, "other_curve": run.other_curve}


def table(results: list[dict], args) -> str:
    lines = [f"| mode | backend | task | size | steps to copy loss < 0.5 | < {args.threshold} | final copy loss "
             "| final other loss | tokens/s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        steps = [str(s) if s is not None else f"not in {r['steps_run']}"
                 for s in (r["steps_to_0.5"], r["steps_to_threshold"])]
        lines.append(f"| {r['mode']} | {r['backend']} | {r['task']} | {r['size']} | {steps[0]} | {steps[1]} | "
                     f"{r['final_copy_loss']:.3f} | {r['final_other_loss']:.3f} | {r['tokens_per_second']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="xx", help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--modes", default=",".join(POSITION_MODES), help="comma-separated position modes")
    parser.add_argument("--backends", default=None,
                        help="comma-separated backends for the relative mode (default: every one usable here)")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=0, help="0: 4 x d_model")
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--length", type=int, default=32, help="xx: L, the length of x")
    parser.add_argument("--segment", type=int, default=24, help="far: S, the copied segment's length")
    parser.add_argument("--min-distance", type=int, default=64, help="far: shortest distance of the copy")
    parser.add_argument("--max-distance", type=int, default=1000, help="far: longest distance of the copy")
    parser.add_argument("--row-length", type=int, default=0, help="far: tokens per row (0: max distance + S)")
    parser.add_argument("--skip", type=int, default=4, help="far: the copy's first tokens left out of the loss")
    parser.add_argument("--copies", type=int, default=1, help="far: segments copied per row")
    parser.add_argument("--warmup-steps", type=int, default=0, help="the first steps train on --warmup-kind rows")
    parser.add_argument("--warmup-kind", choices=TASKS, default="xx",
                        help="warm-up rows, as long as the task's (xx: x;x with L = half the row)")
    parser.add_argument("--relative-buckets", type=int, default=0,
                        help="relative mode: log-spaced distance buckets (ModelConfig.relative_buckets; 0: off)")
    parser.add_argument("--previous-tokens", type=int, default=0,
                        help="each position also reads the N tokens before it (ModelConfig.previous_tokens)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--eval-rows", type=int, default=256, help="rows of the held-out batch")
    parser.add_argument("--threshold", type=float, default=0.1, help="copy loss that counts as copying")
    parser.add_argument("--stop-early", action="store_true", help="stop a run once under the threshold")
    parser.add_argument("--train-on", choices=TRAIN_ON, default="copy",
                        help="put the training loss on the copy targets only, on every token, or on every "
                             "token with --copy-weight on targets found by an earlier --min-match repeat")
    parser.add_argument("--copy-weight", type=float, default=4.0, help="weighted: weight of the copy targets")
    parser.add_argument("--min-match", type=int, default=4,
                        help="weighted: tokens before a target that must have occurred earlier in the row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on shared cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON file for the settings, results and every curve")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = args.modes.split(",")
    for name in modes:
        if name not in POSITION_MODES:
            parser.error(f"--modes: unknown mode {name!r}; expected some of {', '.join(POSITION_MODES)}")
    try:
        tasks = [task_of(kind, args) for kind in args.tasks.split(",")]
        for task in tasks:
            warmup_of(args, task)
    except ValueError as error:
        parser.error(str(error))
    print(f"copy tasks: ln(vocab) = {math.log(args.vocab):.3f} is the loss of a model that cannot copy", flush=True)
    results = []
    for task in tasks:
        for mode in modes:
            backends = usable_backends(mode, args.device)
            if args.backends and position_scheme_type(mode).has_fast_kernel:
                backends = args.backends.split(",")
            for backend in backends:
                results.append(run_one(args, mode, backend, task))
    print(table(results, args))
    if args.out:
        record = {"settings": vars(args), "machine": cpu_name(), "device": args.device,
                  "torch": torch.__version__, "results": results}
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
