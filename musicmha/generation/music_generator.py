"""MIDI in, MIDI out: `MusicGenerator` ties a checkpoint's model and tokenizer to symusic scores.

The prompt is tokenized, its last bars condition the model (cut at a bar boundary), new tokens are sampled
(grammar-constrained by default, within the controls: instruments, length, opening, pitch range, density), and
the continuation is decoded, moved to the prompt's time base and merged into an untouched copy of the prompt:
its notes, tracks, tempos and meters come out exactly as they went in (the model's tempo changes come after).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import symusic
import torch

from musicmha import checkpoint
from musicmha.data.midi_io import load_midi
from musicmha.data.styles import DENSITY_LEVELS, RELATIVE_DENSITIES
from musicmha.errors import ConfigError, MidiError, MusicmhaError
from musicmha.generation import add_part as part
from musicmha.generation import infill as fill
from musicmha.generation.controls import InstrumentRule, LengthRule, exact_tempo, nearest_tempo
from musicmha.generation.copy_head import CopyHead, load_copy_head, transparent_ids
from musicmha.generation.density import resolve_level, with_density
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.part_after import INTERLEAVED, layout_of
from musicmha.generation.pitch_range import check_pitch_range
from musicmha.generation.request import GenerationRequest, make_request
from musicmha.generation.result import (GenerationResult, merge_into_prompt, new_notes, new_tempos, tempo_at_end,
                                        to_prompt_time)
from musicmha.generation.sampling import generate, row_seed

if TYPE_CHECKING:
    import os  # noqa: F401 (named in the Prompt alias)

logger = logging.getLogger(__name__)

Prompt = "str | os.PathLike | bytes | symusic.Score"  # a MIDI file, its bytes, or a score


def _with_seed(request: GenerationRequest) -> GenerationRequest:
    """Without a seed a fresh one is drawn: every result then names the seed that makes it again."""
    return request if request.sampling.seed is not None else request.with_seed(random.randrange(2**31))


class MusicGenerator:
    """A checkpoint's model and tokenizer (and copy head) as MIDI in, MIDI out. Every method that makes music
    takes one `GenerationRequest` (or its fields as keywords, not both), checked by `check`."""

    def __init__(self, model, tokenizer, copy_head: CopyHead | None = None, part_layout: str | None = None) -> None:
        if model.config.vocab_size != tokenizer.vocab_size:
            raise MusicmhaError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model expects "
                                f"{model.config.vocab_size}: they come from different checkpoints")
        self.model, self.tokenizer = model.eval(), tokenizer
        if copy_head is not None:  # infill: the head searches suffix · prefix · middle, sentinels left out
            copy_head = replace(copy_head, transparent=transparent_ids(tokenizer))
        self.copy_head = copy_head  # mixed into every decoded token (None: the model alone)
        self.spec = None if tokenizer.is_bpe else tokenizer.grammar_spec()
        self.writes_programs = self.spec is not None and any(t.startswith("Program_") for t in self.spec.tokens)
        self.trained_part_layout = part_layout if tokenizer.fim_tokens else None  # add_part's trained layout

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, *, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, copy_head: bool = True) -> MusicGenerator:
        """Model + tokenizer of a checkpoint: a folder, a shipped model's name ("musicmha-small") or None for
        the default (musicmha.checkpoint.resolve); GPU in bf16 when there is one, else CPU in fp32. With
        copy_head, the checkpoint's copy head when it has one (musicmha/generation/copy_head.py); a request's
        copy_boost sets how strongly it repeats."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model, tokenizer = checkpoint.load(folder, device=device, dtype=dtype)  # checks they belong together
        head = load_copy_head(checkpoint.resolve(folder), tokenizer) if copy_head else None
        return cls(model, tokenizer, head, layout_of(checkpoint.resolve(folder)))

    # --- requests -------------------------------------------------------------------------------------
    def check(self, request: GenerationRequest, *, has_prompt: bool = False,
              infill: bool = False) -> GenerationRequest:
        """What the request asks, against this model: the tempo and meter its tokenizer can write, whether
        it writes instruments at all, the copy head's presence. Returns the request (for chaining); raises a
        ConfigError with one line that says what is wrong. Front ends call it before anything runs."""
        if not isinstance(request, GenerationRequest):
            raise ConfigError(f"request must be a GenerationRequest, got {type(request).__name__}")
        if infill:
            request.for_infill()
            self.require_infill()
        if request.copy_boost is not None and self.copy_head is None:
            raise ConfigError("copy_boost: this checkpoint has no copy head, or it is turned off "
                              "(musicmha fit-copy-head makes one)")
        if request.constrained and self.spec is None:
            raise ConfigError("grammar-constrained decoding needs a tokenizer without BPE; pass constrained=False")
        if request.style is not None and self.tokenizer.condition_tokens is None:
            raise ConfigError("style: this model was trained without style and density tokens; leave the style "
                              "out, or use a model trained with them")
        if request.density in RELATIVE_DENSITIES and not has_prompt:
            raise ConfigError(f"density {request.density!r} is relative to a prompt: give a prompt, or a level "
                              f"1-{DENSITY_LEVELS}")
        opening = request.opening
        if has_prompt and not opening.empty:
            raise ConfigError("tempo and time_signature open a piece from nothing; a prompt keeps its own")
        if self.spec is None:
            if (request.explicit_instruments or request.allow_early_end or request.decoding_controls
                    or not opening.empty):
                raise ConfigError("instrument, tempo, meter, pitch-range, density and early-end controls need a "
                                  "tokenizer without BPE")
        else:
            opening.token_ids(self.spec)  # the tempo and meter this tokenizer can write
            check_pitch_range(request.pitch_range, self.tokenizer.pitch_range)  # None: nothing asked
            if request.explicit_instruments and not self.writes_programs:
                raise ConfigError("this tokenizer writes no Program tokens, so it cannot choose instruments")
        return request

    def require_infill(self) -> None:
        """A ConfigError unless this model can fill bars in (it was trained with fill-in-the-middle tokens)."""
        if self.tokenizer.fim_tokens is None or self.spec is None:
            raise ConfigError("this model cannot fill bars in: it was trained without fill-in-the-middle tokens "
                              "(train with --fim-rate > 0 on data prepared by this version)")

    def plan_infill(self, prompt: Prompt | list[int], start_bar: int, end_bar: int,
                    order: str = "spm", request: GenerationRequest | None = None) -> fill.InfillPlan:
        """The scaffold the model reads to regenerate bars `start_bar`..`end_bar` of `prompt` (a score or its
        token ids), checked against the piece and this model's context (musicmha/generation/infill.py); with
        a request, its style and density tokens open the prefix."""
        self.require_infill()
        ids = prompt if isinstance(prompt, list) else self._read_prompt(prompt)[1]
        condition = self.conditioning_tokens(request, ids) if request is not None else []
        return fill.plan(TokenGrammar(self.spec), ids, start_bar, end_bar, context=self.model.config.max_seq_len,
                         fim=self.tokenizer.fim_tokens, bos_id=self.tokenizer.bos_id,
                         eos_id=self.tokenizer.eos_id, order=order, condition=condition)

    def conditioning_tokens(self, request: GenerationRequest, prompt_ids: list[int]) -> list[int]:
        """The Style and Density tokens the request asks for, written after BOS as training puts them
        (musicmha/data/conditioning.py); "calmer"/"busier" is one level from the prompt's own density."""
        cond = self.tokenizer.condition_tokens
        level = resolve_level(request.density, self.spec, prompt_ids)  # the level the decoding rule keeps too
        return cond.prefix(request.style, level) if cond is not None else []

    def prompt_budget(self, request: GenerationRequest) -> int:
        """How many prompt tokens condition the model. The sampler's KV cache slides by a quarter of the
        context when it is full, so new tokens need not reserve half of it: the prompt fills the context
        less one slide (or less the whole request when that is shorter). Every new token then sees at
        least three quarters of a context of history, the first slide comes after as many new tokens as
        every later one, and a short request never slides at all."""
        if request.prompt_tokens is not None:
            return request.prompt_tokens
        context = self.model.config.max_seq_len
        return max(1, context - min(request.length.token_limit, max(1, context // 4)))

    def _condition(self, ids: list[int], budget: int) -> tuple[list[int], float]:
        """The prompt's tail that conditions the model, cut at a bar start, and its time in quarters."""
        bar_id = self.tokenizer.bar_id
        bars = [i for i, t in enumerate(ids) if t == bar_id]
        cut = next((i for i in bars if len(ids) - i <= budget), bars[-1] if bars else 0)
        offset = 0.0
        if cut > 0 and self.spec is not None:
            timeline = TokenGrammar(self.spec)
            timeline.follow(torch.tensor([ids[:cut + 1]]))
            offset = timeline.rows[0].bar_start
        return [self.tokenizer.bos_id, *ids[cut:]], offset

    # --- making music ---------------------------------------------------------------------------------
    def continue_midi(self, prompt: Prompt | None = None, request: GenerationRequest | None = None, *,
                      callback: Callable[[int, torch.Tensor], bool | None] | None = None,
                      **fields) -> list[GenerationResult]:
        """Continue `prompt` (None: start from nothing). One result per sample, decoded as one batch.

        `request` says what to make (musicmha.generation.request.GenerationRequest: length, variations,
        sampling, instruments, opening, grammar); or give its fields as keywords (bars=8, temperature=0.9,
        seed=1, ...), not both. Without a seed a fresh one is drawn; sample k gets seed + k, reported in its
        result. callback(step, new_tokens) runs after every token; returning True stops there (what was
        made is kept)."""
        request = _with_seed(self.check(self._request(request, fields), has_prompt=prompt is not None))
        score, ids = self._read_prompt(prompt)
        length, opening = request.length, request.opening
        rule = self._instrument_rule(request, ids if score is not None else None)
        condition, offset_quarters = self._condition(ids, self.prompt_budget(request))
        condition = condition[:1] + self.conditioning_tokens(request, condition[1:]) + condition[1:]
        start = torch.tensor([condition] * request.num_samples)  # on the host: generate sends it, the grammar reads it
        # One grammar follows every row: it masks the next token (syntax when constrained, the controls
        # always) and keeps the time that ends bar/second requests, so each token is parsed once.
        timeline = None
        if self.spec is not None:
            timeline = TokenGrammar(self.spec, instruments=rule, length=length, syntax=request.constrained,
                                    opening=opening.token_ids(self.spec), hold_tempo=not request.allow_tempo_changes,
                                    no_empty_bars=not request.allow_empty_bars, limit_chords=True,
                                    keep_parts=not request.allow_parts_to_stop, pitch_range=request.pitch_range)
            timeline.follow(start)
            # A prompt without tempo events plays at MIDI's default 120 BPM: that is its tempo to hold.
            timeline.anchor(qpm=(tempo_at_end(score) or 120.0) if score is not None else None)
        restricts = timeline is not None and (request.constrained or not rule.unrestricted or length.timed
                                              or timeline.opening or request.decoding_controls)
        allowed = with_density(timeline, request.density, condition) if restricts else None
        out = generate(self.model, start, request.sampling, length.token_limit, callback=callback, allowed=allowed,
                       eos_token_id=self.tokenizer.eos_id, copy_head=self.copy_head, copy_boost=request.copy_boost,
                       stop=timeline.reached if timeline is not None and length.timed else None)
        results = [self._result(score, condition, row, offset_quarters, row_seed(request.sampling.seed, k))
                   for k, row in enumerate(out.tolist())]  # one copy to the host, not one per row
        if score is None and opening.tempo is not None and self.spec is not None:
            for result in results:  # the file says the tempo asked (100 BPM), not the token's step (100.97)
                exact_tempo(result.score, nearest_tempo(self.spec, opening.tempo), opening.tempo)
        if length.timed and not length.allow_early_end and timeline is not None:
            short = int((~timeline.reached()).sum())
            if short:
                logger.warning("%d of %d samples stopped at the %d-token cap before the requested length",
                               short, request.num_samples, length.token_limit)
        return results

    def infill(self, prompt: Prompt, start_bar: int, end_bar: int, request: GenerationRequest | None = None, *,
               callback: Callable[[int, torch.Tensor], bool | None] | None = None,
               **fields) -> list[GenerationResult]:
        """Regenerate bars `start_bar`..`end_bar` (counted from 1, inclusive) of `prompt`, keeping every note
        that starts outside them (see musicmha/generation/infill.py). The request (or its fields) gives the
        variations, sampling and instruments as for continue_midi; the range is the length, and the piece
        keeps its own tempo and meter. Each result's `span` is the regenerated range in the score's ticks."""
        request = _with_seed(self.check(self._request(request, fields), has_prompt=True, infill=True))
        score, ids = self._read_prompt(prompt)
        if score is None:
            raise ConfigError("infill needs a prompt: the piece whose bars are regenerated")
        rule = self._instrument_rule(request, ids)
        plan = self.plan_infill(ids, start_bar, end_bar, request=request)
        n_bars, count = end_bar - start_bar + 1, request.num_samples
        timeline = TokenGrammar(self.spec, instruments=rule, length=LengthRule(bars=n_bars),
                                hold_tempo=True, no_empty_bars=True,  # the piece's tempo map is kept
                                limit_chords=True, pitch_range=request.pitch_range)
        fill.prime_middle_rows(timeline, plan, count)
        out = generate(self.model, torch.tensor([plan.scaffold] * count), request.sampling, plan.new_token_limit,
                       callback=callback, allowed=with_density(timeline, request.density, ids),
                       eos_token_id=self.tokenizer.eos_id, stop=timeline.reached, copy_head=self.copy_head,
                       copy_boost=request.copy_boost)
        if not bool(timeline.reached().all()):
            logger.warning("%d of %d samples ran out of context before the range's last bar; it stays emptier",
                           int((~timeline.reached()).sum()), count)
        return [fill.result(self.tokenizer, score, plan, row, n_bars, row_seed(request.sampling.seed, k))
                for k, row in enumerate(out.tolist())]

    def add_part(self, prompt: Prompt, request: GenerationRequest | None = None, *, instrument: int | str,
                 bars: tuple[int, int] | None = None, layout: str = INTERLEAVED, callback: Callable | None = None,
                 **fields) -> list[GenerationResult]:
        """Write a new part (a GM program, a family word such as "bass", or "drums") into `prompt` over the piece
        or `bars` (first, last), counted from 1; every existing note is kept. `layout`: interleaved (any model)
        or the trained_part_layout of a model trained on part rows (musicmha/generation/add_part.py)."""
        request = _with_seed(self.check(part.check_request(self._request(request, fields)), has_prompt=True))
        part.check_layout(layout, self.trained_part_layout)
        return part.add_part(self, prompt, request, instrument=instrument, bars=bars, layout=layout, callback=callback)

    # --- helpers --------------------------------------------------------------------------------------
    @staticmethod
    def _request(request: GenerationRequest | None, fields: dict) -> GenerationRequest:
        if request is not None and fields:
            raise ConfigError(f"pass request=GenerationRequest(...) or {', '.join(fields)}, not both")
        return request if request is not None else make_request(None, **fields)

    def _read_prompt(self, prompt: Prompt | None) -> tuple[symusic.Score | None, list[int]]:
        score = load_midi(prompt) if prompt is not None else None
        ids = self.tokenizer.encode(score) if score is not None else []
        if score is not None and not self._has_notes(ids):
            # Conditioning on bars and tempos alone would silently ignore the prompt the user gave.
            lo, hi = self.tokenizer.pitch_range
            raise MidiError(f"no notes left after tokenization: the prompt's {score.note_num()} note(s) are all "
                            f"outside what the tokenizer can write (pitch range {lo}..{hi - 1})")
        return score, ids

    def _instrument_rule(self, request: GenerationRequest, prompt_ids: list[int] | None) -> InstrumentRule:
        rule = request.instrument_rule(self.spec, prompt_ids)
        if self.spec is not None and not rule.unrestricted and not self.writes_programs:
            rule = InstrumentRule()  # a tokenizer without programs: nothing to restrict (check refuses explicit ones)
        logger.debug("instruments: %s", rule.describe())
        return rule

    def _has_notes(self, ids: list[int]) -> bool:
        if self.spec is not None:  # no BPE: a Pitch token is a note
            return any(self.spec.tokens[i].startswith("Pitch") for i in ids)
        return bool(ids) and self.tokenizer.decode(ids).note_num() > 0

    def _decode(self, ids: list[int]) -> symusic.Score:
        if len(ids) <= 1:  # BOS alone: miditok cannot decode an empty sequence
            return symusic.Score(self.tokenizer.ticks_per_quarter)
        return self.tokenizer.decode(ids)

    def _result(self, prompt: symusic.Score | None, condition: list[int], row: list[int],
                offset_quarters: float, seed: int) -> GenerationResult:
        new = row[len(condition):]
        if self.tokenizer.eos_id in new:
            new = new[:new.index(self.tokenizer.eos_id)]
        full_tok, prompt_tok = self._decode(condition + new), self._decode(condition)
        continuation = new_notes(full_tok, prompt_tok, full_tok.ticks_per_quarter)
        continuation.tempos.extend(new_tempos(full_tok, prompt_tok))
        if prompt is None:
            return GenerationResult(full_tok, continuation, condition + new, new, 0, seed)
        tpq = prompt.ticks_per_quarter
        continuation = to_prompt_time(continuation, tpq, round(offset_quarters * tpq))
        merged = merge_into_prompt(prompt, continuation)
        return GenerationResult(merged, continuation, condition + new, new, int(prompt.end()), seed)
