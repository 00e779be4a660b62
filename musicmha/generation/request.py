"""What to make: one frozen `GenerationRequest` that every front end builds once (the CLI from its flags, the
app from its fields, Python from keywords) and the generator checks once (`MusicGenerator.check`).

Like Hugging Face's `GenerationConfig`, the request holds every choice of a generation that is not the
prompt: its length, how many variations, how tokens are drawn (one `SamplingOptions`), the copy head's
boost, the instruments, the opening of a piece from nothing and the grammar's rules. What can be checked
without a model is checked here, when the request is made; what depends on the model's tokenizer (which
tempos and meters it can write, whether it writes programs) is checked by the generator.

New features extend this class rather than every signature between the page and the sampler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from musicmha.data.styles import parse_density, parse_style
from musicmha.errors import ConfigError
from musicmha.generation.controls import InstrumentRule, LengthRule, Opening, prompt_programs
from musicmha.generation.copy_head import checked_sampling_boost
from musicmha.generation.options import SamplingOptions, whole_number
from musicmha.generation.pitch_range import parse_pitch_range

if TYPE_CHECKING:
    from musicmha.data.vocabulary import GrammarSpec

SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "seed")  # SamplingOptions' fields, accepted loose
# What infill takes no value for: its bar range is its length, and the piece keeps its own tempo and meter.
NOT_FOR_INFILL = ("max_new_tokens", "bars", "seconds", "allow_early_end", "prompt_tokens", "tempo",
                  "time_signature", "allow_tempo_changes", "allow_empty_bars", "allow_parts_to_stop", "constrained")


@dataclass(frozen=True)
class GenerationRequest:
    """One generation's choices. Length: `max_new_tokens`, `bars` or `seconds` (at most one; default 512
    tokens); bars and seconds are reached unless `allow_early_end`. `num_samples` variations, drawn by
    `sampling` (sample k gets seed + k). `copy_boost` replaces the copy head's sampling boost for this
    request (None: the checkpoint's own). Instruments: the prompt's own unless `instruments` (GM programs
    0..127), `drums` or `allow_new_instruments` say otherwise. From nothing, `tempo` (BPM) and
    `time_signature` ((3, 4)) open the piece. `prompt_tokens` caps how much of the prompt conditions the
    model (None: as much as fits). Grammar: `constrained` syntax, the tempo holds unless
    `allow_tempo_changes`, every new bar holds a note unless `allow_empty_bars`, and every part of the
    prompt's last 8 bars plays on, resting no longer than it rested there, unless `allow_parts_to_stop`.
    `style` (a name from musicmha.data.styles.STYLES, e.g. "swing") and `density` (a level 1..7, its word
    such as "calm" or "busy", or "calmer"/"busier" than the prompt) ask a model trained with those tokens
    for that character; None leaves it to the prompt. `pitch_range` ((48, 84), ("C3", "C6") or "C3-C6") keeps
    every new pitched note between those pitches (musicmha.generation.pitch_range; drums are not limited)."""

    max_new_tokens: int | None = None
    bars: int | None = None
    seconds: float | None = None
    allow_early_end: bool = False
    num_samples: int = 1
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    copy_boost: float | None = None
    instruments: tuple[int, ...] | None = None
    drums: bool | None = None
    allow_new_instruments: bool = False
    tempo: float | None = None
    time_signature: tuple[int, int] | None = None
    prompt_tokens: int | None = None
    constrained: bool = True
    allow_tempo_changes: bool = False
    allow_empty_bars: bool = False
    allow_parts_to_stop: bool = False
    style: str | None = None
    density: int | str | None = None
    pitch_range: tuple[int, int] | str | None = None

    def __post_init__(self) -> None:
        self.length  # noqa: B018 (each property validates its part)
        self.opening  # noqa: B018
        if not isinstance(self.sampling, SamplingOptions):
            raise ConfigError(f"sampling must be a SamplingOptions, got {type(self.sampling).__name__}")
        for name in ("num_samples", "prompt_tokens"):
            value = getattr(self, name)
            if value is not None and not whole_number(value):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.copy_boost is not None:
            object.__setattr__(self, "copy_boost", checked_sampling_boost(self.copy_boost))
        for name in ("allow_early_end", "allow_new_instruments", "constrained", "allow_tempo_changes",
                     "allow_empty_bars", "allow_parts_to_stop"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self._check_instruments()
        if self.style is not None:
            object.__setattr__(self, "style", parse_style(self.style))
        if self.density is not None:
            object.__setattr__(self, "density", parse_density(self.density))
        object.__setattr__(self, "pitch_range", parse_pitch_range(self.pitch_range))

    def _check_instruments(self) -> None:
        if self.drums is not None and not isinstance(self.drums, bool):
            raise ConfigError(f"drums must be True, False or None, got {self.drums!r}")
        if self.instruments is None:
            return
        if isinstance(self.instruments, str | bytes) or not isinstance(self.instruments, Iterable):
            raise ConfigError(f"instruments must be a list of GM programs 0..127, got {self.instruments!r}")
        if self.allow_new_instruments:
            raise ConfigError("give either an instrument list or allow_new_instruments, not both")
        programs = tuple(self.instruments)
        InstrumentRule(frozenset(programs))  # GM programs 0..127
        if not programs and self.drums is False:
            raise ConfigError("no instruments left to play: give at least one program or allow drums")
        object.__setattr__(self, "instruments", programs)

    @property
    def length(self) -> LengthRule:
        return LengthRule(self.max_new_tokens, self.bars, self.seconds, self.allow_early_end)

    @property
    def opening(self) -> Opening:
        return Opening(self.tempo, self.time_signature)

    @property
    def decoding_controls(self) -> bool:
        """Whether the request asks for a control that only the grammar's masks keep (pitch range, density)."""
        return self.pitch_range is not None or self.density is not None

    @property
    def explicit_instruments(self) -> bool:
        return self.instruments is not None or self.drums is not None or self.allow_new_instruments

    def instrument_rule(self, spec: GrammarSpec | None, prompt_ids: list[int] | None) -> InstrumentRule:
        """The instruments new notes may use, given the prompt's tokens (None: from nothing)."""
        programs = prompt_programs(spec, prompt_ids) if spec is not None and prompt_ids is not None else None
        return InstrumentRule.resolve(programs, instruments=self.instruments, drums=self.drums,
                                      allow_new_instruments=self.allow_new_instruments)

    def with_seed(self, seed: int) -> GenerationRequest:
        return dataclasses.replace(self, sampling=self.sampling.with_seed(seed))

    def updated(self, **fields: Any) -> GenerationRequest:
        """A copy with `fields` changed; temperature=, top_k=, top_p=, seed= change its sampling options."""
        return make_request(self, **fields)

    def for_infill(self) -> GenerationRequest:
        """This request, checked for regenerating a bar range (which is its length)."""
        defaults = GenerationRequest()
        given = [name for name in NOT_FOR_INFILL if getattr(self, name) != getattr(defaults, name)]
        if given:
            raise ConfigError(f"infill takes no {', '.join(given)}: the bar range is its length, and the piece "
                              "keeps its own tempo and meter")
        return self


FIELDS = tuple(f.name for f in dataclasses.fields(GenerationRequest))


def make_request(request: GenerationRequest | None = None, **fields: Any) -> GenerationRequest:
    """`request` (default: a default request) with `fields` changed: any of GenerationRequest's fields, and
    SamplingOptions' fields loose (temperature=, top_k=, top_p=, seed=), but not both those and sampling=.
    Unknown names are one error that lists the valid ones."""
    if request is not None and not isinstance(request, GenerationRequest):
        raise ConfigError(f"request must be a GenerationRequest, got {type(request).__name__}")
    unknown = sorted(set(fields) - set(FIELDS) - set(SAMPLING_FIELDS))
    if unknown:
        raise ConfigError(f"unknown generation option(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(FIELDS + SAMPLING_FIELDS)}")
    loose = {name: fields.pop(name) for name in SAMPLING_FIELDS if fields.get(name) is not None}
    for name in SAMPLING_FIELDS:
        fields.pop(name, None)
    if loose and fields.get("sampling") is not None:
        raise ConfigError(f"pass sampling=SamplingOptions(...) or {', '.join(loose)}, not both")
    base = request or GenerationRequest()
    if fields.get("sampling") is None:
        fields.pop("sampling", None)
        if loose:
            fields["sampling"] = dataclasses.replace(base.sampling, **loose)
    return dataclasses.replace(base, **fields)
