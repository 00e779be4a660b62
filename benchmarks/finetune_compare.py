"""Fine-tuning on a folder of MIDI the base model never saw: base vs full fine-tune vs LoRA vs from scratch.

    python tests/user_midi.py --out /tmp/ft/midi                   # 36 user-like files (issue 16's evidence)
    python benchmarks/finetune_compare.py --midi /tmp/ft/midi --out /tmp/ft/compare --steps 48

1. `musicmha prepare MIDI --out OUT/tokens --tokenizer BASE` (skipped when OUT/tokens exists, or give --tokens).
2. One `musicmha train` per method, all with the same step budget (--steps), batch (--batch-size), seed,
   validation cadence (--eval-every, --eval-batches) and early stopping (--early-stop):
   - `base`: the base checkpoint as it is (no training);
   - `full`: `--init-from BASE` (the finetune preset: lr 3e-4, 20 warmup steps), all weights;
   - `lora:R` / `lora:R:LR`: `--init-from BASE --lora-rank R` (default alpha 2R, every projection), at the
     finetune preset's learning rate or LR; the adapter is also merged with `musicmha merge-lora` and the
     merged folder checked against the run's own `model/`;
   - `scratch`: the base's shape (config.json) from random weights, the `small` preset's learning rate
     (1e-3, or --scratch-lr) with the same warmup as the fine-tunes (--warmup, default 20).
   Wall time and CPU time (the child process's user + system) of each run are recorded; other jobs on a
   shared machine stretch the wall time, not the CPU time.
3. Test NLL with `musicmha eval --checkpoint RUN/model --data TOKENS --split test --json`, and per test piece
   (the same windows, computed here).
4. Continuations: for each test piece and each --offsets bar O (default 0; e.g. 0,16,32 for more prompts) with enough bars, the prompt
   is the piece's first O + --prompt-bars bars (its own tokens up to the Bar token that opens the next bar;
   the generator keeps the tail that fits its context) and the truth the next --bars bars. Every model
   continues every prompt with `MusicGenerator.continue_midi(bars=--bars, num_samples=--samples,
   seed=prompt index)` (product defaults: grammar-constrained, temperature 1, no top-k/top-p), so all models
   draw with the same seeds. Scored by the pitch-class histogram Jensen-Shannon divergence (bits) of the
   continued bars to the true ones (musicmha/evaluation/music_stats.py, as benchmarks/sample_stats.py). Two references
   need no model: the prompt's own last --bars bars as the continuation ("repeat the last bars") and another
   prompt's truth ("an unrelated truth").

Markdown tables go to stdout; everything to OUT/results.json (rewritten after every step, and read back so a
rerun skips finished runs: delete OUT/runs/NAME to redo one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from common import SKIPS, bar_indices, cut_prompt, mean_se, passage_stats

from musicmha.data.dataset import TokenSplit
from musicmha.evaluation import music_stats as ms
from musicmha.evaluation.evaluate import _chunks  # private: see nll_per_piece
from musicmha.generation.music_generator import MusicGenerator

DEFAULT_METHODS = "base,full,lora:8,lora:8:1e-3,scratch"


def method_name(spec: str) -> str:
    parts = spec.split(":")
    if parts[0] == "lora":
        return f"lora-r{parts[1]}" + (f"-lr{parts[2]}" if len(parts) > 2 else "")
    return parts[0]


def train_command(spec: str, args, tokens: Path, run: Path) -> list[str] | None:
    parts = spec.split(":")
    common = ["--data", str(tokens), "--out", str(run), "--max-steps", str(args.steps),
              "--batch-size", str(args.batch_size), "--warmup-steps", str(args.warmup),
              "--eval-every", str(args.eval_every), "--eval-batches", str(args.eval_batches),
              "--early-stop", str(args.early_stop), "--log-every", str(args.eval_every),
              "--save-every", str(args.steps), "--seed", str(args.seed)]
    if parts[0] == "base":
        return None
    if parts[0] == "full":
        return ["musicmha", "train", "--init-from", str(args.base), *common]
    if parts[0] == "lora":
        lr = ["--learning-rate", parts[2]] if len(parts) > 2 else []
        return ["musicmha", "train", "--init-from", str(args.base), "--lora-rank", parts[1], *lr, *common]
    if parts[0] == "scratch":
        shape = json.loads((args.base / "config.json").read_text())
        flags = []
        for key in ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len", "position", "dropout"):
            flags += ["--" + key.replace("_", "-"), str(shape[key])]
        return ["musicmha", "train", "--preset", "small", *flags, "--learning-rate", str(args.scratch_lr), *common]
    raise SystemExit(f"unknown method {spec!r} (base, full, lora:R, lora:R:LR, scratch)")


def timed(command: list[str], log: Path | None = None) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command; (result, wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if log is not None:
        log.write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result, wall, cpu


def validation_curve(stderr: str, every: int) -> dict[int, float]:
    """step -> validation NLL, read from the progress bar's postfix (set at every evaluation step; the bar
    shows step k with its postfix once it has counted step k)."""
    curve = {}
    for step, value in re.findall(r"(\d+)/\d+ \[[^\]\r\n]*?val=([0-9.]+|nan)\]", stderr):
        if int(step) > 0 and int(step) % every == 0 and value != "nan":
            curve[int(step)] = float(value)
    return dict(sorted(curve.items()))


def count_parameters(run: Path | None, base: Path) -> tuple[int, int]:
    """(trainable, total) parameters: the adapter's matrices for LoRA, else every weight."""
    from safetensors.torch import load_file

    from musicmha.nn.model import MusicTransformer

    total = MusicTransformer.from_pretrained(run / "model" if run else base).num_parameters()
    adapter = run / "adapter" / "adapter.safetensors" if run else None
    if adapter is not None and adapter.is_file():
        return sum(t.numel() for t in load_file(str(adapter)).values()), total
    return total, total


@torch.no_grad()
def nll_per_piece(checkpoint: Path, tokens: Path) -> dict[str, dict]:
    """Test NLL of each piece, in the windows `musicmha eval` uses (consecutive max_seq_len windows, cut by
    its own evaluate._chunks: the library has no public name for that cut, nor a per-piece NLL)."""
    from musicmha.nn.model import MusicTransformer

    model = MusicTransformer.from_pretrained(checkpoint).eval()
    split = TokenSplit(tokens, "test")
    window = model.config.max_seq_len
    out = {}
    for index in range(len(split)):
        total, count = 0.0, 0
        chunks = [c for c in _chunks(split.piece(index), "windows", window) if len(c) >= 2]
        full = [c for c in chunks if len(c) == window + 1]
        batches = [np.stack(full[i:i + 8]) for i in range(0, len(full), 8)] + [c[None] for c in chunks
                                                                                if len(c) != window + 1]
        for batch in batches:
            ids = torch.from_numpy(batch.astype(np.int64))
            logits, _ = model(ids[:, :-1])
            nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:], reduction="sum")
            total += nll.item()
            count += ids[:, 1:].numel()
        out[split.source(index).get("path")] = {"nll": total / count, "tokens": count}
    return out


def pick_prompts(tokens: Path, tokenizer, offsets: list[int], prompt_bars: int, bars: int) -> tuple[list, dict]:
    """Every test piece's prompts of its first offset + prompt_bars bars, for each offset, that
    common.cut_prompt keeps (with the next `bars` bars as the truth)."""
    split = TokenSplit(tokens, "test")
    chosen, skipped = [], dict.fromkeys(SKIPS, 0)
    for index in range(len(split)):
        ids = split.piece(index).tolist()
        bar_idx = bar_indices(ids, tokenizer.bar_id)
        for offset in offsets:
            end = offset + prompt_bars
            cut = cut_prompt(tokenizer, ids, bar_idx, end, bars)
            if isinstance(cut, str):
                skipped[cut] += 1
                continue
            chosen.append({"piece": split.source(index).get("path"), "offset": offset, "prompt_bars": end, **cut})
    return chosen, skipped


def continuation_scores(checkpoint: Path, prompts: list[dict], args) -> list[dict]:
    generator = MusicGenerator.from_pretrained(checkpoint, device="cpu")
    tok = generator.tokenizer
    rows = []
    for k, item in enumerate(prompts):
        results = generator.continue_midi(item["prompt_score"], bars=args.bars, seed=args.seed + k,
                                          num_samples=args.samples)
        for s, result in enumerate(results):
            got = passage_stats(tok, item["prompt"], result.new_token_ids, item["prompt_bars"], args.bars)
            rows.append({"prompt": k, "sample": s, "piece": item["piece"], "offset": item["offset"],
                         "js": ms.js_divergence(got["pch"], item["truth_stats"]["pch"]),
                         "notes": got["notes"], "truth_notes": item["truth_stats"]["notes"],
                         "tokens": len(result.new_token_ids)})
    return rows


def reference_scores(prompts: list[dict], tokenizer, bars: int) -> dict[str, list[float]]:
    repeat, unrelated = [], []
    for k, item in enumerate(prompts):
        score = tokenizer.decode(item["prompt"] + item["truth"])
        lines = ms.bar_starts(score, 0, score.end() + 64 * score.ticks_per_quarter)
        p = item["prompt_bars"]
        last = ms.pitch_class_histogram(score, lines[max(0, p - bars)], lines[p])
        repeat.append(ms.js_divergence(last, item["truth_stats"]["pch"]))
        other = prompts[(k + 1) % len(prompts)]
        unrelated.append(ms.js_divergence(other["truth_stats"]["pch"], item["truth_stats"]["pch"]))
    return {"repeat the last bars": repeat, "an unrelated truth": unrelated}


def size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB" if path.is_file() else "—"


def print_tables(results: dict) -> None:
    runs = results["methods"]
    print(f"\nTest split: {results['test_pieces']} pieces, {runs[0]['test']['tokens']:,} predicted tokens; "
          f"budget {results['settings']['steps']} steps of {results['settings']['batch_size']} x "
          f"{results['settings']['seq_len']} tokens\n")
    print("| method | test NLL | perplexity | trainable parameters | steps run (best) | wall | CPU | model.safetensors | adapter.safetensors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        t = r.get("training")
        steps = f"{t['steps_run']} ({t['best_step']})" if t else "—"
        wall = f"{t['wall_s'] / 60:.1f} min" if t else "—"
        cpu = f"{t['cpu_s'] / 60:.1f} min" if t else "—"
        print(f"| {r['name']} | {r['test']['nll']:.3f} | {r['test']['perplexity']:.1f} | "
              f"{r['trainable_parameters']:,} | {steps} | {wall} | {cpu} | {r['model_size']} | {r['adapter_size']} |")
    pieces = list(runs[0]["test_by_piece"])
    print("\n| method | " + " | ".join(f"{p} ({runs[0]['test_by_piece'][p]['tokens']:,} tok)" for p in pieces) + " |")
    print("|---|" + "---:|" * len(pieces))
    for r in runs:
        print(f"| {r['name']} | " + " | ".join(f"{r['test_by_piece'][p]['nll']:.3f}" for p in pieces) + " |")
    curves = [(r["name"], r["training"]["validation_curve"]) for r in runs if r.get("training")]
    steps = sorted({s for _, c in curves for s in map(int, c)})
    if steps:
        print("\nValidation NLL during training (progress-bar postfix):\n")
        print("| method | " + " | ".join(str(s) for s in steps) + " |")
        print("|---|" + "---:|" * len(steps))
        for name, c in curves:
            c = {int(k): v for k, v in c.items()}
            print(f"| {name} | " + " | ".join(f"{c[s]:.3f}" if s in c else "" for s in steps) + " |")
    gen = results.get("continuations")
    if gen:
        n = len(gen["prompts"])
        print(f"\nContinuations: {n} prompts x {results['settings']['samples']} samples, {results['settings']['bars']} "
              f"bars each; pitch-class JS divergence to the true bars (bits, mean ± s.e.; lower is better)\n")
        kinds = sorted({p["piece"] for p in gen["prompts"]})
        print("| continuation | all | " + " | ".join(kinds) + " | new notes / true notes | generation wall |")
        print("|---|---:|" + "---:|" * len(kinds) + "---:|---:|")
        for r in runs:
            rows = r["continuations"]
            per = [mean_se([x["js"] for x in rows if x["piece"] == k]) for k in kinds]
            ratio = sum(x["notes"] for x in rows) / max(1, sum(x["truth_notes"] for x in rows))
            print(f"| {r['name']} | {mean_se([x['js'] for x in rows])} | " + " | ".join(per) +
                  f" | {ratio:.2f} | {r['generation_wall_s']:.0f} s |")
        for name, values in gen["references"].items():
            per = [mean_se([v for v, p in zip(values, gen["prompts"]) if p["piece"] == k]) for k in kinds]
            print(f"| *{name}* | {mean_se(values)} | " + " | ".join(per) + " | — | — |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi", type=Path, required=True, help="MIDI folder (tests/user_midi.py --out)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokens", type=Path, default=None, help="a folder prepared already (default OUT/tokens)")
    parser.add_argument("--base", type=Path, default=Path("checkpoints/musicmha-small"))
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    parser.add_argument("--steps", type=int, default=48, help="step budget of every training run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=20, help="warmup steps of every run (finetune preset: 20)")
    parser.add_argument("--eval-every", type=int, default=8)
    parser.add_argument("--eval-batches", type=int, default=2)
    parser.add_argument("--early-stop", type=int, default=4)
    parser.add_argument("--scratch-lr", type=float, default=1e-3, help="from scratch: the small preset's")
    parser.add_argument("--offsets", default="0", help="bars before each prompt's last --prompt-bars")
    parser.add_argument("--prompt-bars", type=int, default=4)
    parser.add_argument("--bars", type=int, default=4)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tables-only", action="store_true",
                        help="print the tables of OUT/results.json (validation curves re-read from the logs)")
    args = parser.parse_args()
    if args.tables_only:
        results = json.loads((args.out / "results.json").read_text())
        for entry in results["methods"]:
            log = args.out / f"train-{entry['name']}.log"
            if entry.get("training") and log.is_file():
                entry["training"]["validation_curve"] = validation_curve(log.read_text(), args.eval_every)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        print_tables(results)
        return

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    tokens = args.tokens or args.out / "tokens"
    results_file = args.out / "results.json"
    if not (tokens / "manifest.json").is_file():
        timed(["musicmha", "prepare", str(args.midi), "--out", str(tokens), "--tokenizer", str(args.base),
               "--workers", str(args.threads)], args.out / "prepare.log")
    previous = json.loads(results_file.read_text()) if results_file.is_file() else {}
    done = {r["spec"]: r for r in previous.get("methods", [])}

    from musicmha.data.tokenizer import MusicTokenizer

    tokenizer = MusicTokenizer.load(args.base)
    prompts, skipped = pick_prompts(tokens, tokenizer, [int(o) for o in args.offsets.split(",")],
                                    args.prompt_bars, args.bars)
    for item in prompts:
        item["truth_stats"] = passage_stats(tokenizer, item["prompt"], item["truth"], item["prompt_bars"], args.bars)
    manifest = json.loads((tokens / "manifest.json").read_text())
    results = {
        "date": date.today().isoformat(), "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "tokens": str(tokens), "splits": manifest["splits"], "test_pieces": manifest["splits"]["test"]["pieces"],
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "seq_len": json.loads((args.base / "config.json").read_text())["max_seq_len"]},
        "methods": [],
        "continuations": {"prompts": [{"piece": p["piece"], "offset": p["offset"]} for p in prompts],
                          "skipped": skipped, "references": reference_scores(prompts, tokenizer, args.bars)},
    }
    print(f"{len(prompts)} prompts from the test pieces; skipped: {skipped}", flush=True)

    for spec in args.methods.split(","):
        name = method_name(spec)
        # the base model does not depend on the training budget
        key = [args.steps, args.batch_size, args.seed, args.offsets, args.samples] if spec != "base" else \
            ["base", args.seed, args.offsets, args.samples]
        if spec in done and done[spec].get("settings_key") == key:
            results["methods"].append(done[spec])
            print(f"{name}: done before, kept", flush=True)
            continue
        run = args.out / "runs" / name
        command = train_command(spec, args, tokens, run)
        entry = {"spec": spec, "name": name, "settings_key": key,
                 "train_command": " ".join(command) if command else None}
        if command:
            if run.exists():
                import shutil

                shutil.rmtree(run)
            print(f"{name}: {' '.join(command)}", flush=True)
            result, wall, cpu = timed(command, args.out / f"train-{name}.log")
            training = json.loads((run / "model" / "training.json").read_text())
            states = sorted((run / "state").glob("step-*"))
            stop = re.search(r"early stop at step (\d+)", result.stderr)
            entry["training"] = {"wall_s": wall, "cpu_s": cpu, "best_step": training["steps"],
                                 "steps_run": int(states[-1].name.split("-")[1]) if states else training["steps"],
                                 "early_stopped": bool(stop),
                                 "best_validation_nll": training["final_validation_nll"],
                                 "validation_curve": validation_curve(result.stderr, args.eval_every)}
            checkpoint = run / "model"
            if spec.startswith("lora"):  # the one-command merge gives the run's own merged model
                merged = args.out / "merged" / name
                timed(["musicmha", "merge-lora", str(run / "adapter"), "--out", str(merged)])
                from safetensors.torch import load_file

                a, b = load_file(str(merged / "model.safetensors")), load_file(str(checkpoint / "model.safetensors"))
                entry["merge_lora_max_abs_diff"] = max((a[k] - b[k]).abs().max().item() for k in a)
        else:
            checkpoint, run = args.base, None
        entry["checkpoint"] = str(checkpoint)
        entry["trainable_parameters"], entry["parameters"] = count_parameters(run, args.base)
        entry["model_size"] = size(checkpoint / "model.safetensors")
        entry["adapter_size"] = size(run / "adapter" / "adapter.safetensors") if run else "—"
        evaluated, eval_wall, _ = timed(["musicmha", "eval", "--checkpoint", str(checkpoint), "--data", str(tokens),
                                         "--split", "test", "--json"])
        test = json.loads(evaluated.stdout)
        entry["test"] = {k: test[k] for k in ("nll", "perplexity", "bits_per_note", "tokens", "pieces")}
        entry["test_by_piece"] = nll_per_piece(checkpoint, tokens)
        print(f"{name}: test NLL {test['nll']:.4f} (eval {eval_wall:.0f} s)", flush=True)
        started = time.perf_counter()
        entry["continuations"] = continuation_scores(checkpoint, prompts, args)
        entry["generation_wall_s"] = time.perf_counter() - started
        print(f"{name}: {len(entry['continuations'])} continuations in {entry['generation_wall_s']:.0f} s, "
              f"JS {mean_se([x['js'] for x in entry['continuations']])}", flush=True)
        results["methods"].append(entry)
        results_file.write_text(json.dumps(results, indent=1) + "\n")
        done[spec] = entry
    results_file.write_text(json.dumps(results, indent=1) + "\n")
    print_tables(results)


if __name__ == "__main__":
    main()
