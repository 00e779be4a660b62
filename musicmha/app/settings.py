"""The page's generation settings: their limits, their words for musicians, and the conversion of UI values
to `continue_midi` keyword arguments (checked here, since API callers can send anything).

The sampling values become one SamplingOptions, through the same `SamplingOptions.from_inputs` as the CLI's
flags: its ranges are the only ones; the sliders' narrower spans are the page's choice."""

from __future__ import annotations

import math
from typing import Any

import gradio as gr

from musicmha.data.tokenizer import program_names
from musicmha.errors import ConfigError
from musicmha.generation.options import SamplingOptions

MAX_VARIATIONS = 4
LIMITS = {"bars": 32, "seconds": 60, "tokens": 2048}  # longest generation a request may ask for
MAX_PROMPT_TOKENS = 2048
TEMPO_RANGE = (20.0, 400.0)  # beyond this a BPM is a typo; the tokenizer's own range is checked later

KEEP, NEW, CHOOSE = "Keep the prompt's instruments", "Let the model add instruments", "Choose them"
INSTRUMENT_MODES = (KEEP, NEW, CHOOSE)
PROGRAM_CHOICES = [(f"{i}: {name}", i) for i, name in enumerate(program_names())]
MODEL_METER = "the model's choice"
METERS = (MODEL_METER, "4/4", "3/4", "2/4", "2/2", "6/8", "9/8", "12/8", "5/4", "7/8")

# Label, then a short musical explanation; the technical name stays in the label for API users.
LABELS = {
    "temperature": ("Temperature: adventure", "Lower is safer and more predictable, higher is wilder."),
    "top_k": ("Top-k: keep only the k likeliest next events (0: off)",
              "Small values stay in the most expected notes; 0 lets every note be considered."),
    "top_p": ("Top-p: drop unlikely surprises (1: off)",
              "0.9 cuts the rarest 10% of choices; 1 keeps them all."),
    "prompt_tokens": ("Memory: how much of the prompt the model hears (tokens, 0: as much as fits)",
                      "Less memory makes the continuation follow the last bars more than the whole piece."),
    "seed": ("Seed", "The same seed and settings give the same music again."),
}


def parse_meter(text: str | None) -> tuple[int, int] | None:
    """'3/4' -> (3, 4); empty or the model's choice -> None."""
    text = (text or "").strip()
    if not text or text == MODEL_METER:
        return None
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise gr.Error(f"time signature must look like 3/4, not {text!r}")
    return int(parts[0]), int(parts[1])


def _programs(values: Any) -> list[int]:
    values = [] if values is None else values if isinstance(values, list | tuple) else [values]
    programs = []
    for value in values:
        if isinstance(value, str) and ":" in value:  # an API caller may send the label
            value = value.split(":", 1)[0]
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise gr.Error(f"instruments must be General MIDI programs 0..127, not {value!r}") from None
        if not 0 <= number <= 127 or number != float(value):
            raise gr.Error(f"instruments must be General MIDI programs 0..127, not {value!r}")
        programs.append(number)
    return programs


def instrument_kwargs(mode: str | None, programs: Any, drums: bool | None) -> dict[str, Any]:
    mode = mode or KEEP
    if mode not in INSTRUMENT_MODES:
        raise gr.Error(f"instruments must be one of: {', '.join(INSTRUMENT_MODES)}")
    if mode == KEEP:
        return {}
    if mode == NEW:
        return {"allow_new_instruments": True}
    chosen = _programs(programs)
    if not chosen and not drums:
        raise gr.Error("choose at least one instrument, or drums")
    return {"instruments": chosen, "drums": bool(drums)}


def generation_kwargs(unit: str, length: float, temperature: float, top_k: float | None, top_p: float | None,
                      seed: float | None, random_seed: bool, variations: float, prompt_tokens: float | None,
                      instruments_mode: str | None = KEEP, programs: Any = None, drums: bool | None = True,
                      allow_early_end: bool | None = False, tempo: float | None = None,
                      time_signature: str | None = None) -> dict[str, Any]:
    """UI values -> keyword arguments of `continue_midi` (sampling: one SamplingOptions), checked against the
    app's limits. 0 means "off" for top-k, prompt tokens and tempo; top-p 1.0 means off."""
    if unit not in LIMITS:
        raise gr.Error(f"length unit must be one of {', '.join(LIMITS)}, not {unit!r}")
    if not length or not 0 < length <= LIMITS[unit]:
        raise gr.Error(f"length must be between 1 and {LIMITS[unit]} {unit}, not {length}")
    if not 1 <= int(variations or 0) <= MAX_VARIATIONS:
        raise gr.Error(f"variations must be between 1 and {MAX_VARIATIONS}, not {variations}")
    if not random_seed and seed is None:
        raise gr.Error("seed must be a whole number (or tick 'random seed')")
    try:
        sampling = SamplingOptions.from_inputs(temperature, top_k, top_p, None if random_seed else seed)
    except ConfigError as error:
        raise gr.Error(str(error)) from None
    if prompt_tokens is not None and not 0 <= prompt_tokens <= MAX_PROMPT_TOKENS:
        raise gr.Error(f"prompt tokens must be between 0 (automatic) and {MAX_PROMPT_TOKENS}")
    if tempo and not (math.isfinite(tempo) and TEMPO_RANGE[0] <= tempo <= TEMPO_RANGE[1]):
        raise gr.Error(f"tempo must be between {TEMPO_RANGE[0]:g} and {TEMPO_RANGE[1]:g} BPM (0: the model's "
                       f"choice), not {tempo:g}")
    length_arg = {"bars": ("bars", int(length)), "seconds": ("seconds", float(length)),
                  "tokens": ("max_new_tokens", int(length))}[unit]
    kwargs = {length_arg[0]: length_arg[1], "sampling": sampling, "num_samples": int(variations),
              "prompt_tokens": int(prompt_tokens) if prompt_tokens else None,
              **instrument_kwargs(instruments_mode, programs, drums)}
    if allow_early_end:
        kwargs["allow_early_end"] = True
    if tempo:
        kwargs["tempo"] = float(tempo)
    meter = parse_meter(time_signature)
    if meter is not None:
        kwargs["time_signature"] = meter
    return kwargs
