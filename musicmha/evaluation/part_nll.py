"""The NLL of a true part given only the other parts' past, in the order `MusicGenerator.add_part` writes a part
(issue 27 item 4).

add_part (musicmha/generation/add_part.py) has the model read the piece's own tokens and slips the new part's
notes in between: at an onset of the piece once that onset's notes are all written, or at a new onset
(`Position`) between two of the piece's. `interleave_part` builds that stream with the true part in place of a
sampled one, under the same `PartWalk` that masks add_part's sampling: the piece's tokens are forced, the
part's tokens are teacher-forced at the first place the walk's order takes them. `part_nll` scores it in
causal passes: every token of the part (its Position, Program, Pitch, Velocity and Duration tokens) given
everything before it, so the other parts' notes up to its onset and none after it. The model's own
distribution is scored (the model mixed with its copy head when it has one, as add_part samples), not the
walk's mask; `refused` counts the part's tokens the mask would not have let add_part sample (a pitch outside
the part's range, a chord over its limit, a new onset where the walk offers none).

`part_after_nll` scores the same part in the layout a model trained on part rows writes it
(musicmha/generation/part_after.py): the other parts of a span of bars, whole, then `FIM_Middle Program_p`
and the part's stream, so every token of the part is given all the other parts of its span. The two layouts
spend different tokens on a part (the after layout writes a Position before each of the part's onsets, the
interleaved one only before the onsets the other parts lack), so both report nats per note as well: in the
interleaved order that is the whole stream's NLL less the other parts' own (so it also counts what the
model pays for the part's rests), in the after layout the part's tokens' NLL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import symusic
import torch

from musicmha.data.instruments import program_family
from musicmha.data.part_rows import LEAD_BARS, part_sentinel, split_part, with_lead_bars
from musicmha.data.vocabulary import DRUMS
from musicmha.evaluation.evaluate import log_probs
from musicmha.generation import infill as fill
from musicmha.generation.add_part import CHORD_LIMITS, DEFAULT_CHORD_LIMIT, NOTES_PER_BAR, part_range
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.part_after import OTHERS_SHARE, spans
from musicmha.generation.part_walk import ENDS_AN_ONSET, Part, PartWalk


@dataclass
class Interleaved:
    tokens: list[int]  # opening (BOS, conditioning), then the piece's tokens with the part's slipped in
    targets: list[int]  # indices in tokens of the part's tokens
    refused: int  # part tokens the walk's mask would not have allowed
    notes: int  # the part's notes in the range


def note_groups(spec, part_ids: Sequence[int], first: int, last: int) -> dict[tuple[int, int], list[list[int]]]:
    """The part's notes in bars first..last, as token groups (Program, Pitch, Velocity, Duration) keyed by
    (bar counted from 1, position), read from the part tokenized alone."""
    grammar = TokenGrammar(spec)
    grammar.reset(1)
    row, groups = grammar.rows[0], {}
    current: list[int] | None = None
    for token in part_ids:
        grammar.advance(row, token)
        kind = grammar.types[token]
        if kind == "Program":
            current = [token]
            if first <= row.bars <= last:
                groups.setdefault((row.bars, row.position), []).append(current)
        elif current is not None and kind in ("Pitch", "PitchDrum", "Velocity", "Duration"):
            current.append(token)
        else:
            current = None
    return groups


def interleave_part(spec, ids: Sequence[int], part_ids: Sequence[int], program: int, first: int, last: int,
                    opening: Sequence[int], pitch_range: tuple[int, int], lead: int = 0) -> Interleaved:
    """The stream add_part's walk reads over bars first..last of the piece `ids` when the part it writes is the
    one `part_ids` tokenize (`program`: the part's GM program, DRUMS for the kit), after `opening`. With
    `lead` (the LEAD layout), the part's bar b goes into the piece's bar b + lead, and the piece gets `lead`
    empty bars at its end, as add_part lays it out."""
    grammar = TokenGrammar(spec)
    ids = with_lead_bars(ids, spec, lead)
    lines = fill.bar_lines(grammar, ids)
    family_limit = DEFAULT_CHORD_LIMIT if program == DRUMS else CHORD_LIMITS.get(program_family(program),
                                                                                DEFAULT_CHORD_LIMIT)
    low, high = part_range(program, pitch_range)
    part = Part(program, low, high, first + lead, last + lead, chord_limit=family_limit, bar_limit=NOTES_PER_BAR)
    walk = PartWalk(spec, ids, part, offset=len(opening), end=lines[last + lead][0], time_from_offset=bool(lead))
    groups = {(bar + lead, position): notes for (bar, position), notes in note_groups(spec, part_ids, first,
                                                                                     last).items()}
    pending = sorted(groups)
    positions = {int(walk.grammar.position_values[t]): t for t in range(len(walk.grammar.types))
                 if walk.grammar.types[t] == "Position"}
    out = Interleaved(list(opening), [], 0, sum(len(g) for g in groups.values()))
    walk.follow(torch.tensor([out.tokens]))

    def push(token: int, of_part: bool) -> None:
        if of_part:
            out.refused += not bool(walk.allowed(0)[token])
            out.targets.append(len(out.tokens))
        out.tokens.append(token)
        walk.follow(torch.tensor([out.tokens]))

    while not walk.walks[0].done:
        state, row = walk.walks[0], walk.grammar.rows[0]
        onset_done = walk.next_kind[state.next] in ENDS_AN_ONSET and row.previous not in ("Program", "Pitch",
                                                                                          "PitchDrum", "Velocity")
        here = (row.bars, row.position)
        if onset_done and pending and pending[0] == here and row.position >= 0:
            for group in groups[pending.pop(0)]:
                for token in group:
                    push(token, True)
            continue
        if onset_done and pending and pending[0][0] == row.bars and pending[0][1] > row.position:
            following = ids[state.next] if state.next < len(ids) else None
            limit = int(walk.grammar.position_values[following]) if walk.next_kind[state.next] == "Position" \
                else row.bar_positions
            if pending[0][1] < limit:
                push(positions[pending[0][1]], True)
                continue
        push(ids[state.next] if state.next < len(ids) else spec.eos_id, False)
    if pending:
        raise ValueError(f"{len(pending)} onsets of the part were never reached (first {pending[0]})")
    return out


@torch.inference_mode()
def token_nll(model, tokens: Sequence[int], targets: Sequence[int], copy_head=None) -> np.ndarray:
    """NLL (nats) of tokens[t] given tokens[:t] for each t in targets: one causal pass when the tokens fit the
    model's context, else windows of the context sliding by a quarter of it (each token then reads at least
    three quarters of a context, as the sampler's KV cache slides)."""
    context = model.config.max_seq_len
    x = torch.tensor(tokens)
    nll = np.full(len(targets), np.nan)
    where = {t: k for k, t in enumerate(targets)}
    start, slide = 0, max(1, context // 4)
    while True:
        end = min(start + context, len(tokens))
        logp = log_probs(model, x[None, start:end], copy_head)[0]
        scored_from = start + 1 if start == 0 else start + context - slide
        for t in range(scored_from, end):
            if t in where:
                nll[where[t]] = -float(logp[t - 1 - start, tokens[t]])
        if end == len(tokens):
            return nll
        start += slide


def part_nll(generator, prompt: symusic.Score, part: symusic.Score, program: int, first: int,
             last: int, lead: bool = False) -> dict[str, float]:
    """{"nll": mean NLL per token of the part (nats), "tokens", "notes", "refused", "nats per note"}: `part`
    (the true part's tracks with the piece's tempos and meters) scored in bars first..last of `prompt` (the
    other parts) as add_part would have written it, with a default request's opening; with `lead`, in the
    LEAD layout (the opening ends with FIM_Middle Program_p, the others a bar ahead)."""
    from musicmha.generation.request import GenerationRequest

    tokenizer = generator.tokenizer
    ids = tokenizer.encode(prompt)
    opening = [tokenizer.bos_id, *generator.conditioning_tokens(GenerationRequest(), ids)]
    if lead:
        opening += part_sentinel(generator.spec, tokenizer.fim_tokens.middle, program)
    stream = interleave_part(generator.spec, ids, tokenizer.encode(part), program, first, last, opening,
                             tokenizer.pitch_range, lead=LEAD_BARS if lead else 0)
    model, head, start = generator.model, generator.copy_head, len(opening)
    joint = token_nll(model, stream.tokens, range(start, len(stream.tokens)), head)
    targets = set(stream.targets)
    others = [t for i, t in enumerate(stream.tokens) if i not in targets]
    alone = token_nll(model, others, range(start, len(others)), head)
    # What the part costs given the others' past: the whole stream's NLL less the others' own. The part's
    # tokens alone would leave out what it costs *not* to play at an onset (the other parts' next token
    # taking the part's place), which the after layout pays in its Position tokens.
    return _summary(joint[[i - start for i in stream.targets]], stream.notes, float(joint.sum() - alone.sum()),
                    refused=stream.refused)


def _summary(nll: np.ndarray, notes: int, total: float | None = None, **extra) -> dict[str, float]:
    total = float(nll.sum()) if total is None else total
    return {"nll": float(nll.mean()) if len(nll) else float("nan"), "tokens": len(nll), "notes": notes,
            "nats per note": total / notes if notes else float("nan"), **extra}


def part_after_nll(generator, prompt: symusic.Score, part: symusic.Score, program: int, first: int,
                   last: int) -> dict[str, float]:
    """As `part_nll`, in the part-after-the-others layout (module docstring), spans cut as add_part cuts them:
    the part's Position and note tokens are scored, its bar lines (which add_part forces) are not."""
    from musicmha.generation.request import GenerationRequest

    tokenizer, spec = generator.tokenizer, generator.spec
    whole = prompt.copy()
    whole.tracks.extend(t.copy() for t in part.tracks)
    others, stream = split_part(tokenizer.encode(whole), spec, program)
    grammar = TokenGrammar(spec)
    lines, part_lines = fill.bar_lines(grammar, others), fill.bar_lines(grammar, stream)
    sentinel = part_sentinel(spec, tokenizer.fim_tokens.middle, program)
    condition = generator.conditioning_tokens(GenerationRequest(), others)
    nll, notes = [], 0
    for a, b in spans(lines, first, last, int(generator.model.config.max_seq_len * OTHERS_SHARE)):
        opening = ([tokenizer.bos_id] if a == 1 else []) + condition + others[lines[a - 1][0]:lines[b][0]] \
            + sentinel
        written = stream[part_lines[a - 1][0]:part_lines[b][0]]
        targets = [len(opening) + i for i, t in enumerate(written) if grammar.types[t] not in ("Bar", "TimeSig")]
        notes += sum(grammar.types[t] == "Program" for t in written)
        nll.append(token_nll(generator.model, opening + written, targets, generator.copy_head))
    return _summary(np.concatenate(nll) if nll else np.zeros(0), notes)
