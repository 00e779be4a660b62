"""The page's small updates, made by the UI's wiring (ui.py) between the handlers' steps: which result slots
show, players back at 0:00, buttons active only when they can act, and fields that follow the prompt and the
model (the length's unit, the opening of a piece from nothing, the memory the model has, its styles)."""

from __future__ import annotations

import gradio as gr

from musicmha.app.settings import (AS_PROMPT, DENSITY_CHOICES, FROM_PROMPT, LABELS, LIMITS, MAX_PROMPT_TOKENS,
                                   MAX_VARIATIONS, METERS, MODEL_METER, NO_STYLES, STYLE_CHOICES, UNIT_WORDS)


def slots(count: float | None) -> list:
    """Show as many result slots as variations asked for (the first always)."""
    n = int(count or 1)
    return [gr.Column(visible=index < n) for index in range(MAX_VARIATIONS)]


def rewound(count: int = MAX_VARIATIONS) -> list:
    """Players back at 0:00. Gradio's player keeps the position it was left at (its `playback_position`) and
    puts the next audio it is given there: a new result would start where the old one stopped."""
    return [gr.Audio(playback_position=0) for _ in range(count)]


def fresh_slots(count: float | None) -> list:
    """Before a run: the slots it fills, every result's player back at 0:00 for the audio to come, the result
    buttons inactive until there are results, Stop active, and no 'alone' player (an added part's) until its
    result is there."""
    return [*slots(count), *rewound(), *[gr.Button(interactive=False)] * (2 * MAX_VARIATIONS),
            gr.Button(interactive=True), *[gr.Audio(value=None, visible=False) for _ in range(MAX_VARIATIONS)]]


def run_over() -> gr.Button:
    """Stop is active only while something runs."""
    return gr.Button(interactive=False)


def can_regenerate(prompt: str | None) -> gr.Button:
    """Regenerating bars needs a prompt."""
    return gr.Button(interactive=bool(prompt))


def opening_fields(prompt: str | None) -> tuple[gr.Number, gr.Dropdown]:
    """Tempo and time signature open a piece from nothing: with a prompt (which keeps its own) they are
    inactive and back at the model's choice, so they cannot stop a run with an error."""
    if prompt:
        return (gr.Number(value=0, interactive=False),
                gr.Dropdown(choices=list(METERS), value=MODEL_METER, interactive=False))
    return gr.Number(interactive=True), gr.Dropdown(interactive=True)


def show_restored(text: str | None) -> tuple:
    """Handlers.restore's status line, when it wrote one (None: the prompt did not change)."""
    return (gr.skip() if text is None else text), None


def no_range() -> tuple:
    """The bar fields empty on a new page (gradio's Number shows 0 for no value until it is given one)."""
    return None, None


def slots_with_results(results: list[dict] | None) -> list:
    """After a run: a slot per variation made (one stopped before its notes says so in its slot)."""
    return [gr.Column(visible=index == 0 or index < len(results or [])) for index in range(MAX_VARIATIONS)]


def length_input(unit: str) -> gr.Number:
    # No `maximum`: gradio checks it server-side against the first configuration (bars), which would
    # refuse other units' lengths; the handler checks the limit of the chosen unit instead.
    default = {"bars": 4, "seconds": 10, "tokens": 256}[unit]
    return gr.Number(value=default, minimum=1, step=1, label=f"Length ({UNIT_WORDS[unit]}, at most {LIMITS[unit]})",
                     elem_id="length")


def label(key: str) -> dict:
    text, info = LABELS[key]
    return {"label": text, "info": info}


def memory_slider(context: int | None) -> gr.Slider:
    """The prompt memory, up to what the loaded model can hear (its context; unknown: the page's limit)."""
    top = min(context or MAX_PROMPT_TOKENS, MAX_PROMPT_TOKENS)
    text, info = LABELS["prompt_tokens"]
    return gr.Slider(0, top, value=0, step=16, label=f"{text}; at most {top} for this model", info=info,
                     elem_id="prompt-tokens")


def style_menus(available: bool, first: bool = False) -> tuple[gr.Dropdown, gr.Dropdown]:
    """The Style and Density menus for the loaded model. Style is active when it was trained with style tokens,
    else inactive and back at "from the prompt" with a line saying why; density works with every model (the
    grammar keeps it, musicmha/generation/density.py), a model with the tokens also reads it. `first`:
    the components themselves (the page's build); otherwise updates, which keep a choice the model can take.
    Custom values are allowed so that a value the menus do not list (typed, or sent through the API) reaches
    the request's own check, whose one-line message lists the valid choices."""
    style_info = ("the character to ask for; 'from the prompt' lets the model hear it in the prompt"
                  if available else NO_STYLES)
    density_info = "notes per bar: calmer or busier than the prompt, or a level from very calm to densest"
    style = dict(choices=STYLE_CHOICES, interactive=available, info=style_info, allow_custom_value=True,
                 **({} if available else {"value": FROM_PROMPT}))
    density = dict(choices=DENSITY_CHOICES, interactive=True, info=density_info, allow_custom_value=True)
    if not first:
        return gr.Dropdown(**style), gr.Dropdown(**density)
    return (gr.Dropdown(**{"value": FROM_PROMPT, **style}, label="Style", elem_id="style"),
            gr.Dropdown(**{"value": AS_PROMPT, **density}, label="Density (notes per bar)", elem_id="density"))
