"""The page's generation settings: their limits, their words for musicians, and the conversion of the page's
values to one `GenerationRequest` (checked here, since API callers can send anything).

The page's fields are named once (`CONTINUE_SETTINGS`, `FILL_SETTINGS`): ui.py passes them to the handlers by
name, and `page_request` reads them by name. The sampling values become one SamplingOptions through the same
`SamplingOptions.from_inputs` as the CLI's flags, and instruments and meters through the library's own
parsers: their ranges are the only ones; the sliders' narrower spans are the page's choice."""

from __future__ import annotations

from typing import Any

from musicmha.data.styles import DENSITY_WORDS, RELATIVE_DENSITIES, STYLES
from musicmha.data.tokenizer import program_names
from musicmha.errors import ConfigError
from musicmha.generation.controls import parse_programs, parse_time_signature
from musicmha.generation.options import SamplingOptions
from musicmha.generation.pitch_range import pitch_name
from musicmha.generation.request import GenerationRequest

MAX_VARIATIONS = 4
LIMITS = {"bars": 32, "seconds": 60, "tokens": 2048}  # longest generation a request may ask for
MAX_PROMPT_TOKENS = 2048

KEEP, NEW, CHOOSE = "Keep the prompt's instruments", "Let the model add instruments", "Choose them"
INSTRUMENT_MODES = (KEEP, NEW, CHOOSE)
PROGRAM_CHOICES = [(f"{i}: {name}", i) for i, name in enumerate(program_names())]
MODEL_METER = "the model's choice"
METERS = (MODEL_METER, "4/4", "3/4", "2/4", "2/2", "6/8", "9/8", "12/8", "5/4", "7/8")

# Style and density in musical words (musicmha.data.styles); the first choice of each asks for nothing, so the
# model takes the character from the prompt. The menus' values are the library's names ("bossa-nova", "busier").
FROM_PROMPT, AS_PROMPT = "from the prompt", "as the prompt"
STYLE_CHOICES = [(FROM_PROMPT, FROM_PROMPT), *((words, name) for name, words in STYLES.items())]
DENSITY_CHOICES = [(AS_PROMPT, AS_PROMPT), *((word, word) for word in (*RELATIVE_DENSITIES, *DENSITY_WORDS))]
_STYLE_NAMES = {words.lower(): name for name, words in STYLES.items()}  # an API caller may send the words
NO_STYLES = "this model was trained without styles"

# Label, then a short musical explanation; the technical name stays in brackets for API users. Top-k, top-p
# and memory are under the page's "Advanced" fold.
LABELS = {
    "temperature": ("Adventure (temperature)", "Lower is safer and more predictable, higher is wilder."),
    "top_k": ("Choices at each step: only the k likeliest (top-k; 0: all)",
              "Small values keep to the most expected notes and rhythms; 0 lets the model consider everything."),
    "top_p": ("Leave out rare surprises (top-p; 1: keep them all)",
              "0.9 leaves out the rarest tenth of the choices at each step."),
    "prompt_tokens": ("Memory: how much of the prompt the model hears, in model steps (0: as much as fits)",
                      "A note takes 3 to 5 steps. Less memory makes the continuation follow the last bars more "
                      "than the whole piece."),
    "seed": ("Seed", "The same seed and settings give the same music again."),
}
# The length's units in the page's words: a token is one of the model's steps (a note takes 3 to 5).
UNIT_WORDS = {"bars": "bars", "seconds": "seconds", "tokens": "model steps"}


# The page's settings, by the names the handlers receive them under, in the order of the API's parameters
# (after the prompt; gradio_client callers pass them positionally). Regenerating bars has no length, prompt
# memory, early end, tempo or meter: the range is its length and the piece keeps its own.
CONTINUE_SETTINGS = ("unit", "length", "temperature", "top_k", "top_p", "seed", "random_seed", "variations",
                     "prompt_tokens", "checkpoint", "instruments_mode", "programs", "drums", "allow_early_end",
                     "tempo", "time_signature")
FILL_SETTINGS = ("temperature", "top_k", "top_p", "seed", "random_seed", "variations", "checkpoint",
                 "instruments_mode", "programs", "drums")
# Style, density and pitch range come after every other parameter of /generate and /regenerate (and after the
# whole-piece view), so that callers written before them keep working; their defaults ask for nothing.
STYLE_SETTINGS = ("style", "density", "pitch_range")
LENGTH_FIELDS = {"bars": "bars", "seconds": "seconds", "tokens": "max_new_tokens"}


def instrument_fields(mode: str | None, programs: Any, drums: bool | None) -> dict[str, Any]:
    """The instruments radio and its list as request fields."""
    mode = mode or KEEP
    if mode not in INSTRUMENT_MODES:
        raise ConfigError(f"instruments must be one of: {', '.join(INSTRUMENT_MODES)}")
    if mode == KEEP:
        return {}
    if mode == NEW:
        return {"allow_new_instruments": True}
    chosen = parse_programs(programs)
    if not chosen and not drums:
        raise ConfigError("choose at least one instrument, or drums")
    return {"instruments": tuple(chosen), "drums": bool(drums)}


def style_fields(style: str | None, density: Any) -> dict[str, Any]:
    """The style and density menus as request fields: "from the prompt" / "as the prompt" (or nothing) ask for
    nothing; a style's words or name, and a density's word or level, go to the request, which checks them."""
    style = None if not style or str(style).strip().lower() == FROM_PROMPT else str(style).strip()
    if isinstance(density, str) and (not density.strip() or density.strip().lower() == AS_PROMPT):
        density = None
    if isinstance(density, float) and density.is_integer():  # a level sent as a number through the API
        density = int(density)
    return {"style": _STYLE_NAMES.get(style.lower(), style) if style else None, "density": density}


def asked_words(style: str | None, density: int | str | None, pitch_range: tuple[int, int] | None = None) -> str:
    """What a request asked for, in the menus' words ("style bossa nova, density busier, pitches C3-C6"; ""
    for nothing)."""
    parts = [f"style {STYLES.get(style, style)}"] if style else []
    if density is not None:
        parts.append(f"density {DENSITY_WORDS[density - 1] if isinstance(density, int) else density}")
    if pitch_range is not None:
        parts.append("pitches " + "-".join(pitch_name(p) for p in pitch_range))
    return ", ".join(parts)


def page_request(unit: str | None = None, length: float | None = None, temperature: float = 1.0,
                 top_k: float | None = 0, top_p: float | None = 1.0, seed: float | None = None,
                 random_seed: bool = True, variations: float = 1, prompt_tokens: float | None = 0,
                 instruments_mode: str | None = KEEP, programs: Any = None, drums: bool | None = True,
                 allow_early_end: bool | None = False, tempo: float | None = 0, time_signature: str | None = None,
                 checkpoint: str | None = None, style: str | None = None, density: Any = None,
                 pitch_range: str | None = None) -> GenerationRequest:
    """The page's values (by their names in CONTINUE_SETTINGS / FILL_SETTINGS) as one GenerationRequest,
    checked against the page's limits; a ConfigError says what is wrong in one line. `unit` None: no length
    (regenerating bars). 0 means "off" for top-k, prompt memory and tempo; top-p 1 means off. `checkpoint`
    is not part of the request (the handlers choose the model with it). `style` and `density`: see
    `style_fields`; `pitch_range` is text like "C3-C6" (empty: any pitch)."""
    fields: dict[str, Any] = {}
    if unit is not None:
        if unit not in LIMITS:
            raise ConfigError(f"length unit must be one of {', '.join(LIMITS)}, not {unit!r}")
        if not length or not 0 < length <= LIMITS[unit]:
            raise ConfigError(f"length must be between 1 and {LIMITS[unit]} {unit}, not {length}")
        if unit != "seconds" and not float(length).is_integer():
            raise ConfigError(f"length in {unit} must be a whole number, not {length:g}")
        fields[LENGTH_FIELDS[unit]] = float(length) if unit == "seconds" else int(length)
    if not 1 <= int(variations or 0) <= MAX_VARIATIONS:
        raise ConfigError(f"variations must be between 1 and {MAX_VARIATIONS}, not {variations}")
    if not random_seed and seed is None:
        raise ConfigError("seed must be a whole number (or tick 'random seed')")
    if prompt_tokens is not None and not 0 <= prompt_tokens <= MAX_PROMPT_TOKENS:
        raise ConfigError(f"prompt tokens must be between 0 (automatic) and {MAX_PROMPT_TOKENS}")
    meter = None if (time_signature or "").strip() == MODEL_METER else parse_time_signature(time_signature)
    return GenerationRequest(
        **fields, num_samples=int(variations),
        sampling=SamplingOptions.from_inputs(temperature, top_k, top_p, None if random_seed else seed),
        prompt_tokens=int(prompt_tokens) if prompt_tokens else None,
        **instrument_fields(instruments_mode, programs, drums),
        allow_early_end=bool(allow_early_end), tempo=float(tempo) if tempo else None, time_signature=meter,
        **style_fields(style, density), pitch_range=pitch_range)
