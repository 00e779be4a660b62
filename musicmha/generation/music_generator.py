"""MIDI in, MIDI out: `MusicGenerator` ties a checkpoint's model and tokenizer to symusic scores.

The prompt is tokenized, its last bars condition the model (cut at a bar boundary), new tokens are sampled
(grammar-constrained by default, within the controls of musicmha.generation.controls: the prompt's instruments, the
length asked for, the opening tempo and meter), and the continuation is decoded, moved to the prompt's time
base and merged into an untouched copy of the prompt: the prompt's notes, tracks, tempos and time
signatures come out exactly as they went in (tempo changes the model writes are added after its end).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import symusic
import torch

from musicmha.generation.controls import MAX_NEW_TOKENS, InstrumentRule, LengthRule, Opening, prompt_programs  # noqa: F401 (re-export)
from musicmha.errors import ConfigError, MidiError, MusicmhaError
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.options import SamplingOptions
from musicmha.generation.result import GenerationResult, merge_into_prompt, new_notes, new_tempos, tempo_at_end
from musicmha.generation.sampling import generate, row_seed
from musicmha.data.midi_io import load_midi
from musicmha.nn.copy_head import CopyHead

logger = logging.getLogger(__name__)


def _resolve_sampling(sampling: SamplingOptions | None, **loose) -> SamplingOptions:
    """`sampling`, or the loose keyword arguments (temperature=, top_k=, top_p=, seed=) made into one, with a
    fresh seed when none is given: every result then names the seed that makes it again."""
    given = {name: value for name, value in loose.items() if value is not None}
    if sampling is None:
        sampling = SamplingOptions(**given)
    elif given:
        raise ConfigError(f"pass sampling=SamplingOptions(...) or {', '.join(given)}, not both")
    elif not isinstance(sampling, SamplingOptions):
        raise ConfigError(f"sampling must be a SamplingOptions, got {type(sampling).__name__}")
    return sampling if sampling.seed is not None else sampling.with_seed(random.randrange(2**31))


def _stopper(timeline: TokenGrammar) -> Callable[[torch.Tensor], torch.Tensor]:
    def stop(sequences: torch.Tensor) -> torch.Tensor:
        timeline.follow(sequences)
        return timeline.reached()
    return stop


class MusicGenerator:
    def __init__(self, model, tokenizer, copy_head: CopyHead | None = None) -> None:
        if model.config.vocab_size != tokenizer.vocab_size:
            raise MusicmhaError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model expects "
                                f"{model.config.vocab_size}: they come from different checkpoints")
        self.model, self.tokenizer = model.eval(), tokenizer
        fim = tokenizer.fim_tokens
        if copy_head is not None and fim is not None:  # infill: the head searches suffix · prefix · middle
            copy_head = replace(copy_head, transparent=fim.all_ids)
        self.copy_head = copy_head  # mixed into every decoded token (None: the model alone)
        self.spec = None if tokenizer.is_bpe else tokenizer.grammar_spec()

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, *, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, copy_head: bool = True,
                        copy_boost: float | None = None) -> MusicGenerator:
        """Model + tokenizer of a checkpoint: a folder, a shipped model's name ("musicmha-small") or None for
        the default (musicmha.checkpoint.resolve); GPU in bf16 when there is one, else CPU in fp32. With
        copy_head, the checkpoint's copy head when it has one (musicmha/nn/copy_head.py); copy_boost replaces
        its sampling boost (an error when there is no head to boost)."""
        from musicmha import checkpoint

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model, tokenizer = checkpoint.load(folder, device=device, dtype=dtype)  # checks they belong together
        head = CopyHead.load(checkpoint.resolve(folder)) if copy_head else None
        if copy_boost is not None:
            if head is None:
                raise ConfigError("copy_boost: this checkpoint has no copy head, or it is turned off "
                                  "(musicmha fit-copy-head makes one)")
            head = replace(head, sampling_boost=copy_boost)
        return cls(model, tokenizer, head)

    def prompt_budget(self, length: LengthRule, prompt_tokens: int | None = None) -> int:
        """How many prompt tokens condition the model. The sampler's KV cache slides by a quarter of the
        context when it is full, so new tokens need not reserve half of it: the prompt fills the context
        less one slide (or less the whole request when that is shorter). Every new token then sees at
        least three quarters of a context of history, the first slide comes after as many new tokens as
        every later one, and a short request never slides at all."""
        if prompt_tokens is not None:
            return prompt_tokens
        context = self.model.config.max_seq_len
        return max(1, context - min(length.token_limit, max(1, context // 4)))

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

    def continue_midi(self, prompt: str | os.PathLike | bytes | symusic.Score | None = None, *,
                      max_new_tokens: int | None = None, bars: int | None = None, seconds: float | None = None,
                      sampling: SamplingOptions | None = None, temperature: float | None = None,
                      top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                      num_samples: int = 1, prompt_tokens: int | None = None,
                      callback: Callable[[int, torch.Tensor], None] | None = None,
                      constrained: bool = True, instruments: Sequence[int] | None = None,
                      drums: bool | None = None, allow_new_instruments: bool = False,
                      allow_early_end: bool = False, tempo: float | None = None,
                      time_signature: tuple[int, int] | None = None,
                      allow_tempo_changes: bool = False, allow_empty_bars: bool = False) -> list[GenerationResult]:
        """Continue `prompt` (None: start from nothing). One result per sample, decoded as one batch.

        Length: max_new_tokens, bars or seconds (one of them; default 512 tokens). Bars and seconds are
        reached (end-of-piece is masked until then) unless allow_early_end. Instruments: a prompt's own
        (its programs, drums when it has them) unless `instruments` (GM programs 0..127), `drums` or
        allow_new_instruments say otherwise; from nothing, anything unless they are given. From nothing,
        `tempo` (BPM) and `time_signature` ((3, 4)) open the piece. The tempo holds (the prompt's, or the
        first one written) unless allow_tempo_changes; every new bar holds a note unless allow_empty_bars.

        Sampling: `sampling` (a SamplingOptions), or its fields as temperature=, top_k=, top_p=, seed= (not
        both). Without a seed a fresh one is drawn; sample k gets seed + k, reported in its result."""
        length = LengthRule(max_new_tokens, bars, seconds, allow_early_end)
        sampling = _resolve_sampling(sampling, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        for name, value in (("num_samples", num_samples), ("prompt_tokens", prompt_tokens)):
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if constrained and self.spec is None:
            raise ConfigError("grammar-constrained decoding needs a tokenizer without BPE; pass constrained=False")
        opening = Opening(tempo, time_signature)
        if prompt is not None and not opening.empty:
            raise ConfigError("tempo and time_signature open a piece from nothing; a prompt keeps its own")
        explicit = instruments is not None or drums is not None or allow_new_instruments
        if self.spec is None and (explicit or not opening.empty or allow_early_end):
            raise ConfigError("instrument, tempo, meter and early-end controls need a tokenizer without BPE")
        score, ids = self._read_prompt(prompt)
        rule = self._instrument_rule(score, ids, instruments, drums, allow_new_instruments)
        condition, offset_quarters = self._condition(ids, self.prompt_budget(length, prompt_tokens))
        start = torch.tensor([condition] * num_samples)  # on the host: generate sends it, the grammar reads it
        # One grammar follows every row: it masks the next token (syntax when constrained, the controls
        # always) and keeps the time that ends bar/second requests, so each token is parsed once.
        timeline = None
        if self.spec is not None:
            timeline = TokenGrammar(self.spec, instruments=rule, length=length, syntax=constrained,
                                    opening=opening.token_ids(self.spec), hold_tempo=not allow_tempo_changes,
                                    no_empty_bars=not allow_empty_bars)
            timeline.follow(start)
            # A prompt without tempo events plays at MIDI's default 120 BPM: that is its tempo to hold.
            timeline.anchor(qpm=(tempo_at_end(score) or 120.0) if score is not None else None)
        restricts = timeline is not None and (constrained or not rule.unrestricted or length.timed
                                              or timeline.opening)
        out = generate(self.model, start, sampling, length.token_limit, callback=callback,
                       allowed=timeline if restricts else None, eos_token_id=self.tokenizer.eos_id,
                       stop=_stopper(timeline) if timeline is not None and length.timed else None,
                       copy_head=self.copy_head)
        results = [self._result(score, condition, row, offset_quarters, row_seed(sampling.seed, k))
                   for k, row in enumerate(out.tolist())]  # one copy to the host, not one per row
        if length.timed and not length.allow_early_end and timeline is not None:
            short = int((~timeline.reached()).sum())
            if short:
                logger.warning("%d of %d samples stopped at the %d-token cap before the requested length",
                               short, num_samples, length.token_limit)
        return results

    def _read_prompt(self, prompt) -> tuple[symusic.Score | None, list[int]]:
        score = load_midi(prompt) if prompt is not None else None
        ids = self.tokenizer.encode(score) if score is not None else []
        if score is not None and not self._has_notes(ids):
            # Conditioning on bars and tempos alone would silently ignore the prompt the user gave.
            lo, hi = self.tokenizer.pitch_range
            raise MidiError(f"no notes left after tokenization: the prompt's {score.note_num()} note(s) are all "
                            f"outside what the tokenizer can write (pitch range {lo}..{hi - 1})")
        return score, ids

    def _instrument_rule(self, score, ids, instruments, drums, allow_new_instruments) -> InstrumentRule:
        explicit = instruments is not None or drums is not None or allow_new_instruments
        rule = InstrumentRule.resolve(prompt_programs(self.spec, ids) if self.spec and score is not None else None,
                                      instruments=instruments, drums=drums,
                                      allow_new_instruments=allow_new_instruments)
        if self.spec is not None and not rule.unrestricted and not any(t.startswith("Program_")
                                                                       for t in self.spec.tokens):
            if explicit:
                raise ConfigError("this tokenizer writes no Program tokens, so it cannot choose instruments")
            rule = InstrumentRule()
        logger.debug("instruments: %s", rule.describe())
        return rule

    def infill(self, prompt: str | os.PathLike | bytes | symusic.Score, start_bar: int, end_bar: int, *,
               sampling: SamplingOptions | None = None, temperature: float | None = None,
               top_k: int | None = None, top_p: float | None = None, seed: int | None = None, num_samples: int = 1,
               callback: Callable[[int, torch.Tensor], None] | None = None,
               instruments: Sequence[int] | None = None, drums: bool | None = None,
               allow_new_instruments: bool = False) -> list[GenerationResult]:
        """Regenerate bars `start_bar`..`end_bar` (counted from 1, inclusive) of `prompt`, keeping every note
        that starts outside them (see musicmha/generation/infill.py). Same sampling options, instrument rules and grammar
        as continue_midi; each result's `span` is the regenerated range in the score's ticks."""
        from musicmha.generation import infill as fill

        fim = self.tokenizer.fim_tokens
        if fim is None or self.spec is None:
            raise ConfigError("this model cannot fill bars in: it was trained without fill-in-the-middle tokens "
                              "(train with --fim-rate > 0 on data prepared by this version)")
        if num_samples is None or num_samples <= 0:
            raise ConfigError(f"num_samples must be positive, got {num_samples}")
        sampling = _resolve_sampling(sampling, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        score, ids = self._read_prompt(prompt)
        rule = self._instrument_rule(score, ids, instruments, drums, allow_new_instruments)
        request = fill.plan(TokenGrammar(self.spec), ids, start_bar, end_bar, context=self.model.config.max_seq_len,
                            fim=fim, bos_id=self.tokenizer.bos_id, eos_id=self.tokenizer.eos_id)
        timeline = TokenGrammar(self.spec, instruments=rule, length=LengthRule(bars=end_bar - start_bar + 1),
                                hold_tempo=True, no_empty_bars=True)  # the piece's tempo map is kept: a tempo token would be ignored
        fill.prime_middle_rows(timeline, request, num_samples)
        out = generate(self.model, torch.tensor([request.scaffold] * num_samples), sampling,
                       request.new_token_limit, callback=callback, allowed=timeline,
                       eos_token_id=self.tokenizer.eos_id, stop=_stopper(timeline), copy_head=self.copy_head)
        if not bool(timeline.reached().all()):
            logger.warning("%d of %d samples ran out of context before the range's last bar; it stays emptier",
                           int((~timeline.reached()).sum()), num_samples)
        tpq = score.ticks_per_quarter
        span = (fill.to_ticks(request.start_quarters, tpq), fill.to_ticks(request.end_quarters, tpq))
        results = []
        for k, row in enumerate(out.tolist()):
            new = fill.middle_tokens(row, len(request.scaffold), fim.bar, end_bar - start_bar + 1,
                                     self.tokenizer.eos_id)
            middle = fill.decode_middle(self.tokenizer, request, new, tpq)
            merged = fill.place(score, middle, *span)
            results.append(GenerationResult(merged, middle, request.scaffold + new, new, span[0],
                                            row_seed(sampling.seed, k), span))
        return results

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
        continuation = continuation.resample(tpq, min_dur=1)
        continuation = continuation.shift_time(round(offset_quarters * tpq))
        merged = merge_into_prompt(prompt, continuation)
        return GenerationResult(merged, continuation, condition + new, new, int(prompt.end()), seed)
