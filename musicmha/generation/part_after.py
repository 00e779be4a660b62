"""A new part written after the other parts of its bars: add_part's layout for a model trained on
part-in-the-middle rows (musicmha/data/part_rows.py, issue 27 item 3).

The model reads the other parts of a span of bars as one stream, then `FIM_Middle Program_p`, and writes the
part's own stream over the same bars (Bar, TimeSig, then Position and the part's notes). So every new note
hears all the other parts of its span, what comes after it included: a bass note can land on its bar's
chord, a fill can lead into the next bar. The part's stream is walked by the same mask as the interleaved
layout (musicmha/generation/part_walk.py) over the span's bar lines alone, so chords, ranges and the notes a
bar must hold are kept the same way.

A piece longer than a training row's share of others is written in spans of whole bars: each span's others
take at most OTHERS_SHARE of the model's context (a bar longer than that is a span of its own, and the KV
cache slides), and each span is sampled with its own seed; a span does not hear the part written in the span
before it. Which layout a checkpoint was trained on is in its training.json (`layout_of`); add_part writes
it only when asked (`layout=`), as interleaved decoding measured better on the models trained so far.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import symusic
import torch

from musicmha.data.part_rows import AFTER, LEAD, bar_skeleton, part_sentinel
from musicmha.files import TRAINING_FILE
from musicmha.generation.part_walk import Part, PartWalk
from musicmha.generation.result import to_prompt_time
from musicmha.generation.sampling import generate

if TYPE_CHECKING:
    from musicmha.generation.music_generator import MusicGenerator
    from musicmha.generation.request import GenerationRequest

logger = logging.getLogger(__name__)

INTERLEAVED = "interleaved"  # any model: the part slipped into the piece's stream (no look-ahead)
LAYOUTS = (LEAD, AFTER, INTERLEAVED)  # LEAD: interleaved with the others a bar ahead (add_part._interleave)
OTHERS_SHARE = 0.6  # of the context, for a span's other parts (training rows hold ~60% others, median)
SPAN_SEED_STEP = 7919  # span k samples with seed + k * this, so spans do not repeat one random stream


def layout_of(folder: str | Path) -> str | None:
    """The part-row layout a checkpoint's run trained (training.json: part_rate > 0, then part_layout; AFTER
    where a record predates the option), else None (so a model fine-tuned without part rows from one trained
    with them has none: it may have forgotten)."""
    try:
        train = json.loads((Path(folder) / TRAINING_FILE).read_text(encoding="utf-8")).get("train_config", {})
    except (OSError, ValueError, AttributeError):
        return None
    if not float(train.get("part_rate") or 0) > 0:
        return None
    layout = train.get("part_layout", AFTER)
    return layout if layout in (AFTER, LEAD) else None


def spans(lines: list[tuple[int, float]], first: int, last: int, budget: int) -> list[tuple[int, int]]:
    """Bars first..last (from 1) cut into spans (a, b) of whole bars whose tokens fit `budget` (one bar at
    least); `lines` are infill.bar_lines of the piece."""
    found: list[tuple[int, int]] = []
    start = first
    for bar in range(first, last + 1):
        if bar > start and lines[bar][0] - lines[start - 1][0] > budget:
            found.append((start, bar - 1))
            start = bar
    found.append((start, last))
    return found


def write_after(generator: MusicGenerator, ids: list[int], lines: list[tuple[int, float]], part: Part,
                request: GenerationRequest, tpq: int,
                callback: Callable[[int, torch.Tensor], bool | None] | None = None,
                ) -> tuple[list[symusic.Score], list[list[int]]]:
    """(the new music of each sample in the prompt's ticks (`tpq`): each span's decoded tracks, the tokens
    each sample wrote) for `part` over its bars of the piece `ids`."""
    tokenizer, spec = generator.tokenizer, generator.spec
    fim = tokenizer.fim_tokens
    sentinel = part_sentinel(spec, fim.middle, part.program)
    count = request.num_samples
    scores = [symusic.Score(tpq) for _ in range(count)]
    written: list[list[int]] = [[] for _ in range(count)]
    stopped = False

    def relay(step: int, tokens: torch.Tensor) -> bool | None:
        nonlocal stopped
        stopped = bool(callback(step, tokens)) if callback is not None else False
        return stopped

    budget = int(generator.model.config.max_seq_len * OTHERS_SHARE)
    for k, (a, b) in enumerate(spans(lines, part.first_bar, part.last_bar, budget)):
        others = ids[lines[a - 1][0]:lines[b][0]]
        skeleton = bar_skeleton(others, spec)
        opening = ([tokenizer.bos_id] if a == 1 else []) + generator.conditioning_tokens(request, ids) \
            + others + sentinel
        span_part = dataclasses.replace(part, first_bar=1, last_bar=b - a + 1)
        walk = PartWalk(spec, skeleton, span_part, offset=len(opening), end=len(skeleton), time_from_offset=True)
        sampling = request.sampling
        if sampling.seed is not None:
            sampling = dataclasses.replace(sampling, seed=sampling.seed + k * SPAN_SEED_STEP)
        start = torch.tensor([opening] * count)
        limit = len(skeleton) + 5 * part.bar_limit * (b - a + 1)
        out = generate(generator.model, start, sampling, limit, callback=relay, allowed=walk,
                       eos_token_id=tokenizer.eos_id, stop=walk.stop, copy_head=generator.copy_head,
                       copy_boost=request.copy_boost)
        offset = round(lines[a - 1][1] * tpq)
        for row, tokens in enumerate(out[:, len(opening):].tolist()):
            stream = [t for t in tokens if t != tokenizer.eos_id]
            written[row] += stream
            decoded = to_prompt_time(tokenizer.decode(stream), tpq, offset)
            scores[row].tracks.extend(decoded.tracks)
        if stopped:
            logger.info("stopped after bars %d-%d", a, b)
            break
    return scores, written
