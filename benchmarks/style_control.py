"""Style control (issue 28 item 4): does a model trained with Style_ and Density_ tokens know, follow and obey them?

    python benchmarks/style_control.py --checkpoint runs/NAME/model --data /tmp/tokens-full --out /tmp/style.json

Three measurements in one run, printed as markdown tables (and written to --out as JSON):

1. Recognition. For up to --pieces test pieces with a style (the test split's pieces list; drawn in turn from
   each style, seeded, unaugmented), the NLL per token of the piece's first W music tokens (W = min(512,
   context - 3)) after [BOS, Style_s], for every style s of the train split in one batched forward (the network
   alone, no copy head). The true style should give the lowest NLL for >= 80% of the pieces. Also: the mean
   margin (best other style's NLL - the true one's, nats per token) and the NLL with no style token at all.
2. Steering. Each of --n-prompts prompts (data/prompts/*.mid in name order, or --prompts DIR) is continued
   for --bars bars under each style of --styles (default: the --max-styles styles with the most train pieces),
   --samples times (seeds --seed, --seed + 1, ...), and once with no style. The continuation's notes alone
   (with the prompt's meter) give a feature vector (musicmha/evaluation/style_features.py: groove, drums,
   key-invariant pitch classes and intervals, density, polyphony, spread), compared with each steered style's
   centroid over up to --reference-pieces train pieces of it (decoded whole). The asked style should be the
   nearest for >= 70% of the outputs; the confusion and the no-style outputs' nearest styles show the rest.
3. Density. The same prompts continued at each level 1..7 (GenerationRequest(density=level), no style; the
   part density-token switches the decoding rule of musicmha/generation/density.py off, leaving the token): the
   continuation's notes per bar (every note, drums too, over the bars it spans) against the level's middle
   (musicmha.data.styles.level_notes_per_bar): Spearman's rank correlation of asked level and measured
   density, the share within +-25% of the middle and the share inside the level's bounds.
4. Pitch range (part pitch-range): the same prompts continued within each of PITCH_RANGES; the share of new
   pitched notes inside the range asked.

Generation uses the product's sampling defaults and the checkpoint's copy head (--no-copy-head: the model
alone). The defaults take about ten minutes for a d256x4 model on 2 CPU cores; --pieces, --n-prompts,
--max-styles/--styles, --samples and --bars trade time for precision.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from common import load_generator, mean_se, run_record, spearman

from musicmha.data.dataset import TokenSplit
from musicmha.data.styles import (DENSITY_BOUNDS, DENSITY_LEVELS, check_density, density_level, level_notes_per_bar,
                                  parse_style)
from musicmha.errors import ConfigError, MusicmhaError
from musicmha.evaluation import style_features as sf
from musicmha.evaluation.evaluate import log_probs
from musicmha.generation import music_generator

PROMPTS = Path(__file__).resolve().parents[1] / "data" / "prompts"
RECOGNITION_TARGET, STEERING_TARGET, DENSITY_TOLERANCE = 0.8, 0.7, 0.25
PITCH_RANGES = ((36, 60), (48, 72), (60, 84))  # C2-C4, C3-C5, C4-C6


def pieces_by_style(split: TokenSplit) -> dict[str, list[int]]:
    """The unaugmented sequences of a split that have a style, by style (most pieces first)."""
    found: dict[str, list[int]] = {}
    for i in range(len(split)):
        source = split.source(i)
        if source.get("style") and not source.get("aug"):
            found.setdefault(source["style"], []).append(i)
    return dict(sorted(found.items(), key=lambda item: (-len(item[1]), item[0])))


def take_in_turn(by_style: dict[str, list[int]], count: int, seed: int) -> list[tuple[str, int]]:
    """Up to `count` (style, index) pairs, one from each style in turn, each style's pieces in a seeded order."""
    rng = np.random.default_rng(seed)
    queues = {name: [int(i) for i in rng.permutation(indices)] for name, indices in sorted(by_style.items())}
    picked: list[tuple[str, int]] = []
    while len(picked) < count and any(queues.values()):
        for name, queue in queues.items():
            if queue and len(picked) < count:
                picked.append((name, queue.pop(0)))
    return picked


def percent(share: float) -> str:
    return "n/a" if np.isnan(share) else f"{100 * share:.0f}%"


def verdict(share: float, target: float) -> str:
    return f"{percent(share)} (target >= {percent(target)}: {'met' if share >= target else 'NOT met'})"


# --- 1. recognition ------------------------------------------------------------------------------------------

@torch.inference_mode()
def row_nll(model, rows: torch.Tensor, skip: int) -> np.ndarray:
    """Mean NLL per token of each row's tokens after its first `skip` (the network alone)."""
    logp = log_probs(model, rows)[:, skip - 1:-1]
    return (-logp.gather(2, rows[:, skip:, None].to(logp.device))[..., 0]).mean(dim=1).cpu().numpy()


def recognition(model, cond, test: TokenSplit, candidates: list[str], args) -> dict:
    window = min(512, model.config.max_seq_len - 3)
    present = pieces_by_style(test)
    picked = take_in_turn({s: i for s, i in present.items() if s in candidates}, args.pieces, args.seed)
    unseen = {s: len(i) for s, i in present.items() if s not in candidates}
    rows = []
    for style, index in picked:
        music = test.piece(index)[1:-1][:window]  # no BOS, no EOS
        if len(music) < 16:
            continue
        batch = torch.tensor([[cond.bos_id, cond.styles[s], *music.tolist()] for s in candidates])
        nll = row_nll(model, batch, 2)
        plain = float(row_nll(model, torch.tensor([[cond.bos_id, *music.tolist()]]), 1)[0])
        scores = dict(zip(candidates, nll.tolist()))
        best_other = min(v for s, v in scores.items() if s != style)
        rows.append({"style": style, "source": test.source(index).get("path"), "tokens": len(music),
                     "winner": min(scores, key=scores.get), "true_nll": scores[style], "no_style_nll": plain,
                     "margin": best_other - scores[style], "nll": scores})
    print(f"\n## 1. Style recognition: {len(rows)} test pieces, {len(candidates)} candidate styles, "
          f"up to {window} tokens each" + (f"; left out, no train pieces of their style: {unseen}" if unseen else "")
          + "\n")
    print("| true style | pieces | true style wins | margin: best other - true (nats/token) | NLL, true style "
          "| NLL, no style |")
    print("|---|---:|---:|---:|---:|---:|")
    for style in sorted({r["style"] for r in rows}) + ["all"]:
        sel = [r for r in rows if style in ("all", r["style"])]
        wins = np.mean([r["winner"] == r["style"] for r in sel])
        print(f"| {style} | {len(sel)} | {percent(wins)} | {mean_se([r['margin'] for r in sel])} | "
              f"{mean_se([r['true_nll'] for r in sel])} | {mean_se([r['no_style_nll'] for r in sel])} |")
    share = float(np.mean([r["winner"] == r["style"] for r in rows])) if rows else float("nan")
    print(f"\nTrue style has the lowest NLL: {verdict(share, RECOGNITION_TARGET)}")
    return {"window": window, "candidates": candidates, "share": share, "pieces": rows}


# --- 2. steering ---------------------------------------------------------------------------------------------

def continuation_vectors(generator, prompt: Path, args, **asked) -> list[tuple[np.ndarray | None, dict]]:
    """Features of each of --samples continuations of `prompt` (None: no notes), and what was measured."""
    results = generator.continue_midi(prompt, bars=args.bars, seed=args.seed, num_samples=args.samples, **asked)
    out = []
    for result in results:
        notes = sf.with_meter(result.continuation, result.score)
        count, bars = sf.notes_and_bars(notes)
        vector = sf.passage_features(notes) if count else None
        out.append((vector, {"prompt": prompt.name, "seed": result.seed, "notes": count, "bars": bars, **asked}))
    return out


def references(tokenizer, train: TokenSplit, by_style: dict[str, list[int]], styles: list[str], args):
    """Each style's centroid over up to --reference-pieces of its train pieces (seeded, decoded whole), the
    distance's scale, and how many pieces each centroid holds."""
    vectors = {}
    for style in styles:
        rng = np.random.default_rng(args.seed)
        chosen = rng.permutation(by_style[style])[:args.reference_pieces]
        scores = [tokenizer.decode(train.piece(int(i)).tolist()) for i in chosen]
        vectors[style] = [sf.passage_features(s) for s in scores if s.note_num()]
    centroids, scale = sf.fit_centroids(vectors)
    return centroids, scale, {s: len(v) for s, v in vectors.items()}


def steering(generator, train: TokenSplit, by_style, styles: list[str], prompts: list[Path], args) -> dict:
    centroids, scale, counts = references(generator.tokenizer, train, by_style, styles, args)
    rows = []
    for prompt in prompts:
        own = sf.nearest_style(sf.passage_features(generator.tokenizer.decode(generator.tokenizer.encode(prompt))),
                               centroids, scale)
        for asked in [None, *styles]:
            for vector, row in continuation_vectors(generator, prompt, args, style=asked):
                row["prompt_nearest"] = own
                row["nearest"] = sf.nearest_style(vector, centroids, scale) if vector is not None else None
                row["distances"] = sf.style_distances(vector, centroids, scale) if vector is not None else None
                rows.append(row)
            print(f"  {prompt.name} {asked or '(no style)'}: "
                  f"{', '.join(str(r['nearest']) for r in rows[-args.samples:])}", flush=True)
    print(f"\n## 2. Style steering: {len(prompts)} prompts x {args.samples} samples x {len(styles)} styles, "
          f"{args.bars} bars; centroids over train pieces ({', '.join(f'{s}: {n}' for s, n in counts.items())})\n")
    print("| asked | outputs | nearest is asked | " + " | ".join(styles) + " | no notes |")
    print("|---|---:|---:|" + "---:|" * (len(styles) + 1))
    for asked in [*styles, None]:
        sel = [r for r in rows if r["style"] == asked]
        near = Counter(r["nearest"] for r in sel)
        hit = percent(np.mean([r["nearest"] == asked for r in sel])) if asked else "-"
        print(f"| {asked or '(no style)'} | {len(sel)} | {hit} | " + " | ".join(str(near[s]) for s in styles)
              + f" | {near[None]} |")
    print("\nPrompts (their own nearest style): " + ", ".join(
        f"{p.name}: {next(r['prompt_nearest'] for r in rows if r['prompt'] == p.name)}" for p in prompts))
    steered = [r for r in rows if r["style"] is not None]
    share = float(np.mean([r["nearest"] == r["style"] for r in steered])) if steered else float("nan")
    print(f"\nAsked style is the nearest: {verdict(share, STEERING_TARGET)}")
    return {"styles": styles, "reference_pieces": counts, "share": share, "outputs": rows,
            "scale": scale.tolist(), "centroids": {s: c.tolist() for s, c in centroids.items()}}


# --- 3. density ----------------------------------------------------------------------------------------------

def density(generator, prompts: list[Path], args, token_only: bool = False) -> dict:
    """Each level asked for, as the product asks it (the Density token and the decoding rule of
    musicmha/generation/density.py), or with `token_only` the token alone (the rule switched off here)."""
    rows = []
    for level in args.levels:
        middle = level_notes_per_bar(level)
        for prompt in prompts:
            with mock.patch.object(music_generator, "with_density", lambda grammar, *_: grammar) if token_only \
                    else contextlib.nullcontext():
                measured = continuation_vectors(generator, prompt, args, density=level)
            for _, row in measured:
                per_bar = row["notes"] / max(1, row["bars"])
                rows.append({**row, "per_bar": per_bar, "near": abs(per_bar - middle) <= DENSITY_TOLERANCE * middle,
                             "inside": density_level(row["notes"], row["bars"]) == level})
        print(f"  density {level}: " + ", ".join(f"{r['per_bar']:.1f}" for r in rows if r["density"] == level),
              flush=True)
    print(f"\n## 3. Density control ({'the token alone' if token_only else 'token and decoding rule'}): "
          f"{len(prompts)} prompts x {args.samples} samples x {len(args.levels)} levels, {args.bars} bars\n")
    print("| level | asked notes/bar (bounds) | measured notes/bar | within +-25% | inside bounds |")
    print("|---:|---|---:|---:|---:|")
    for level in args.levels:
        sel = [r for r in rows if r["density"] == level]
        low = DENSITY_BOUNDS[level - 2] if level > 1 else 0
        high = DENSITY_BOUNDS[level - 1] if level <= len(DENSITY_BOUNDS) else "inf"
        print(f"| {level} | {level_notes_per_bar(level):.1f} ({low}, {high}] | {mean_se([r['per_bar'] for r in sel])}"
              f" | {percent(np.mean([r['near'] for r in sel]))} | {percent(np.mean([r['inside'] for r in sel]))} |")
    rho = spearman([r["density"] for r in rows], [r["per_bar"] for r in rows])
    near, inside = (float(np.mean([r[k] for r in rows])) for k in ("near", "inside"))
    print(f"\nSpearman (asked level, measured notes per bar): {rho:.3f}; within +-25% of the asked middle: "
          f"{percent(near)}; inside the level's bounds: {percent(inside)}")
    return {"spearman": rho, "within_25_percent": near, "inside_bounds": inside, "outputs": rows}


# --- 4. pitch range ------------------------------------------------------------------------------------------

def pitch_ranges(generator, prompts: list[Path], args) -> dict:
    """Each of PITCH_RANGES asked for (musicmha/generation/pitch_range.py): the share of the new pitched notes
    inside it, and their lowest and highest pitch."""
    rows = []
    print(f"\n## 4. Pitch range: {len(prompts)} prompts x {args.samples} samples x {len(PITCH_RANGES)} ranges, "
          f"{args.bars} bars\n\n| range | new pitched notes | inside | lowest | highest |\n|---|---:|---:|---:|---:|")
    for low, high in PITCH_RANGES:
        results = [r for prompt in prompts for r in generator.continue_midi(
            prompt, bars=args.bars, seed=args.seed, num_samples=args.samples, pitch_range=(low, high))]
        pitches = [n.pitch for r in results for t in r.continuation.tracks if not t.is_drum for n in t.notes]
        inside = float(np.mean([low <= p <= high for p in pitches])) if pitches else float("nan")
        rows.append({"range": [low, high], "notes": len(pitches), "inside": inside})
        print(f"| {low}-{high} | {len(pitches)} | {percent(inside)} | {min(pitches, default='-')} | "
              f"{max(pitches, default='-')} |")
    return {"ranges": rows}


# --- the run -------------------------------------------------------------------------------------------------

def levels(text: str) -> list[int]:
    """--levels: density levels 1..DENSITY_LEVELS, comma-separated."""
    try:
        return [check_density(int(word)) for word in text.split(",")]
    except (ValueError, ConfigError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a model folder trained with style and density tokens")
    parser.add_argument("--data", required=True, help="its prepared token folder (train and test splits, with styles)")
    parser.add_argument("--pieces", type=int, default=40, help="test pieces for recognition")
    parser.add_argument("--prompts", type=Path, default=PROMPTS, help="a folder of prompt .mid files")
    parser.add_argument("--n-prompts", type=int, default=4, help="how many of them (in name order)")
    parser.add_argument("--bars", type=int, default=8, help="bars of each continuation")
    parser.add_argument("--samples", type=int, default=1, help="continuations per prompt and style or level")
    parser.add_argument("--styles", default=None, help="comma-separated styles to steer to (default: --max-styles)")
    parser.add_argument("--max-styles", type=int, default=6, help="without --styles: the styles with most train pieces")
    parser.add_argument("--levels", type=levels, default=list(range(1, DENSITY_LEVELS + 1)),
                        help="comma-separated density levels to ask for (default: all)")
    parser.add_argument("--reference-pieces", type=int, default=20, help="train pieces per style for its centroid")
    parser.add_argument("--parts", default="recognition,steering,density", help="which measurements to run (also: "
                        "density-token, the Density token without the decoding rule; pitch-range)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-copy-head", action="store_true", help="generate from the model alone")
    parser.add_argument("--out", type=Path, default=None, help="write every number here (JSON)")
    return parser


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = load_generator(parser, args.checkpoint, copy_head=not args.no_copy_head)
    cond = generator.tokenizer.condition_tokens
    if cond is None:
        parser.error(f"{args.checkpoint} was trained without style and density tokens: nothing to measure")
    try:
        train, test = TokenSplit(args.data, "train"), TokenSplit(args.data, "test")
    except MusicmhaError as error:
        parser.error(str(error))
    if train.vocab_size != generator.tokenizer.vocab_size:
        parser.error(f"{args.data} has a vocabulary of {train.vocab_size} tokens, the checkpoint "
                     f"{generator.tokenizer.vocab_size}: prepare it with the checkpoint's tokenizer")
    by_style = {s: i for s, i in pieces_by_style(train).items() if s in cond.styles}
    if not by_style:
        parser.error(f"{args.data} has no styles in its train split (prepared before styles, or not from the corpus)")
    try:
        styles = [parse_style(s) for s in args.styles.split(",")] if args.styles else list(by_style)[:args.max_styles]
    except ConfigError as error:
        parser.error(str(error))
    unknown = [s for s in styles if s not in by_style]
    if unknown:
        parser.error(f"no train pieces of {', '.join(unknown)}; choose from: {', '.join(by_style)}")
    prompts = sorted(args.prompts.glob("*.mid"))[:args.n_prompts]
    parts = args.parts.split(",")
    if "recognition" in parts and len(by_style) < 2:
        parser.error(f"recognition needs two styles or more in the train split of {args.data}, it has {list(by_style)}")
    if not prompts and set(parts) & {"steering", "density", "density-token", "pitch-range"}:
        parser.error(f"no .mid prompts in {args.prompts}")
    record = {**run_record(), "checkpoint": str(args.checkpoint), "data": str(args.data)}
    print("\n".join(f"- {key}: {value}" for key, value in record.items()))
    print(f"- train styles (pieces): {', '.join(f'{s} ({len(i)})' for s, i in by_style.items())}")
    results: dict = {"run": record, "seconds": {}}
    for name, run in (("recognition", lambda: recognition(generator.model, cond, test, list(by_style), args)),
                      ("steering", lambda: steering(generator, train, by_style, styles, prompts, args)),
                      ("density", lambda: density(generator, prompts, args)),
                      ("density-token", lambda: density(generator, prompts, args, token_only=True)),
                      ("pitch-range", lambda: pitch_ranges(generator, prompts, args))):
        if name in parts:
            began = time.perf_counter()
            results[name] = run()
            results["seconds"][name] = round(time.perf_counter() - began, 1)
            print(f"\n({name}: {results['seconds'][name]:.0f} s)", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
