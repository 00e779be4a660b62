"""What the benchmark scripts share: table cells (mean ± standard error), Spearman's rank correlation and
Markdown rows, the record of a run (machine, date, threads, command), loading a generator from the command
line, prompts and ranges cut from a token split, the statistics of a passage, one-pass NLL scoring, and a
timed training step.

Scripts run as `python benchmarks/NAME.py`, which puts benchmarks/ on sys.path: `import common` needs no
path edits. musicmha's heavier modules are imported where they are used, so a script pays only for what it
calls.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

EXAMPLE_COLLECTIONS = ("bach", "palestrina", "essenFolksong")
SKIPS = ("too short", "prompt does not round-trip", "no notes")  # why cut_prompt refuses a piece


# --- table cells --------------------------------------------------------------------------------------------

def finite(values) -> list[float]:
    """The values that are not None or nan."""
    return [v for v in values if v is not None and not math.isnan(v)]


def mean(values) -> float:
    """Mean of the finite values; nan when there are none."""
    values = finite(values)
    return statistics.mean(values) if values else float("nan")


def standard_error(values) -> float | None:
    """Standard error of the mean of the finite values: sample standard deviation (ddof=1) / sqrt(n); None
    under two values, where the sample standard deviation is undefined."""
    values = finite(values)
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None


def mean_se(values) -> str:
    """'mean ± standard error' of the finite values (3 decimals); the mean alone for one value (its standard
    error is undefined); 'n/a' for none."""
    values = finite(values)
    if not values:
        return "n/a"
    se = standard_error(values)
    return f"{statistics.mean(values):.3f}" + ("" if se is None else f" ± {se:.3f}")


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties; nan when either side is constant)."""
    def ranks(values) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values), dtype=np.float64)
        for value in np.unique(values):  # ties share their mean rank
            ranked[values == value] = ranked[values == value].mean()
        return ranked
    a, b = ranks(x), ranks(y)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def table_head(columns) -> str:
    """The markdown header of a statistics table: statistic, truth, then one column per name."""
    return "| statistic | truth | " + " | ".join(columns) + " |\n|---|---:|" + "---:|" * len(columns)


def table_row(name: str, of_truth, columns: dict, of_column) -> str:
    """One markdown row: the truth's cell (a string as given, else the values' mean_se) and, for each column's
    samples, mean_se(of_column(samples))."""
    cells = [mean_se(of_column(c)) for c in columns.values()]
    return f"| {name} | {of_truth if isinstance(of_truth, str) else mean_se(of_truth)} | " + " | ".join(cells) + " |"


# --- the record of a run -------------------------------------------------------------------------------------

def run_record() -> dict:
    """What a result belongs to: the machine (lscpu's model name), the date, torch's threads and the command."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout.splitlines()
        machine = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.SubprocessError, StopIteration):
        machine = platform.processor() or platform.machine()
    return {"machine": machine, "date": date.today().isoformat(), "torch_threads": torch.get_num_threads(),
            "command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])}


# --- loading a model ----------------------------------------------------------------------------------------

def load_generator(parser: argparse.ArgumentParser, checkpoint, *, copy_head: bool = True,
                   copy_boost: float | None = None, need_copy_head: bool = False, need_fim: bool = False):
    """MusicGenerator.from_pretrained(checkpoint) on the CPU, or parser.error with one line: the checkpoint
    does not load, has no copy head (need_copy_head, or a copy_boost to check against it) or cannot fill
    bars in (need_fim)."""
    from musicmha.errors import MusicmhaError
    from musicmha.generation.music_generator import MusicGenerator
    from musicmha.generation.request import GenerationRequest

    try:
        generator = MusicGenerator.from_pretrained(checkpoint, device="cpu", copy_head=copy_head)
        generator.check(GenerationRequest(copy_boost=copy_boost))  # sample_stats.py --copy-boost
        if need_fim:
            generator.require_infill()
    except MusicmhaError as error:
        parser.error(str(error))
    if need_copy_head and generator.copy_head is None:
        parser.error(f"{checkpoint} has no copy head: run `musicmha fit-copy-head` first")
    return generator


def parse_and_load(parser: argparse.ArgumentParser, need_fim: bool = False):
    """The arguments (--out made; --checkpoint, --no-copy-head, --copy-boost read) and the generator they name."""
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args, load_generator(parser, args.checkpoint, copy_head=not args.no_copy_head,
                                copy_boost=getattr(args, "copy_boost", None), need_fim=need_fim)


def scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a script that scores a checkpoint on a split of a token folder."""
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--copy-head", action="store_true",
                        help="score the model mixed with its copy head (copy_head.json)")
    parser.add_argument("--json", default=None)


# --- prompts, ranges and examples from a token split --------------------------------------------------------

def bar_indices(ids: list[int], bar_id: int) -> list[int]:
    """Where the Bar tokens of a piece's ids are."""
    return [i for i, t in enumerate(ids) if t == bar_id]


def cut_prompt(tokenizer, ids: list[int], bar_idx: list[int], end: int, bars: int) -> dict | str:
    """{"prompt", "truth", "prompt_score"}: the prompt is ids up to the Bar token that opens bar end + 1 (its
    first `end` bars), the truth the next `bars` bars; kept when the prompt re-encodes to the same tokens (so
    the generator sees exactly this prompt) and prompt and truth both have notes. Else why not (one of SKIPS)."""
    if len(bar_idx) <= end + bars:
        return "too short"
    prompt, truth = ids[:bar_idx[end]], ids[bar_idx[end]:bar_idx[end + bars]]
    prompt_score = tokenizer.decode(prompt)
    if tokenizer.encode(prompt_score) != prompt[1:]:
        return "prompt does not round-trip"
    if not prompt_score.note_num() or not tokenizer.decode(prompt + truth).note_num() > prompt_score.note_num():
        return "no notes"
    return {"prompt": prompt, "truth": truth, "prompt_score": prompt_score}


def draw_range(rng: np.random.Generator, bars: int, n_bars: int) -> tuple[int, int] | None:
    """Bars (first, last), counted from 1, of an n_bars range that starts after the piece's first two bars
    and ends at least two bars before its end; None, drawing nothing, when the piece has under n_bars + 4."""
    if bars < n_bars + 4:
        return None
    first = int(rng.integers(3, bars - n_bars - 1)) if bars - n_bars - 1 > 3 else 3
    return first, first + n_bars - 1


def passage_stats(tokenizer, prompt: list[int], new: list[int], prompt_bars: int, bars: int) -> dict:
    """Statistics of the `bars` bars after the prompt in decode(prompt + new)."""
    from musicmha.evaluation import music_stats as ms

    score = tokenizer.decode(prompt + new)
    lines = ms.bar_starts(score, 0, score.end() + 64 * score.ticks_per_quarter)
    start = lines[prompt_bars]
    end = lines[prompt_bars + bars] if len(lines) > prompt_bars + bars else lines[-1]
    return {
        "start": start, "end": end, "notes": len(ms.notes_array(score, start, end)),
        "pch": ms.pitch_class_histogram(score, start, end).tolist(),
        "prompt_pch": ms.pitch_class_histogram(score, 0, start).tolist(),
        "density": ms.note_density(score, start, end) if end > start else float("nan"),
        "polyphony": ms.polyphony(score, start, end),
        "repeated_bars": ms.repeated_bar_fraction(score, start, end, since=0),
    }


def pick_examples(items: list[dict], usable) -> list[dict]:
    """The first item (in sampled order) of each of EXAMPLE_COLLECTIONS for which usable(item) holds: a
    chorale, a polyphonic mass movement, a folk melody; fewer when a collection has none."""
    picked = []
    for wanted in EXAMPLE_COLLECTIONS:
        found = next((item for item in items if item["source"].startswith(wanted + "/") and usable(item)), None)
        if found is not None:
            picked.append(found)
    return picked


def example_stem(source: str) -> str:
    """A file name stem from a piece's corpus path: 'bach/bwv295.mid' -> 'bach_bwv295'."""
    return source.rsplit(".", 1)[0].replace("/", "_")


# --- scoring and timing -------------------------------------------------------------------------------------

@torch.inference_mode()
def full_context_nll(model, piece: np.ndarray, start: int, end: int, head=None) -> np.ndarray:
    """NLL of each of piece[start:end] given every token before it, in one causal pass over piece[:end]
    (the model alone, or mixed with its copy head `head`)."""
    from musicmha.evaluation.evaluate import log_probs

    logp = log_probs(model, torch.from_numpy(piece[None, :end]), head)[0, start - 1:end - 1]
    y = torch.from_numpy(piece[start:end])
    return -logp.gather(1, y[:, None])[:, 0].numpy()


def sync(device) -> None:
    """Wait for the device's queued work: CUDA calls return before it is done, so time the work, not the launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def make_step(config, batch: int, device: str, precision: str, adamw: str):
    """A closure running one full training step (forward, backward, AdamW) of a fresh model (seeded: every
    variant starts alike) on random tokens, and the model's parameter count."""
    from musicmha import MusicTransformer

    torch.manual_seed(0)
    model = MusicTransformer(config).to(device).train()
    options = {"fused": True} if adamw == "fused" else {"foreach": adamw == "foreach"}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, **options)
    tokens = torch.randint(0, config.vocab_size, (batch, config.max_seq_len + 1), device=device)

    def one_step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)

    one_step()  # warm-up
    return one_step, model.num_parameters()
