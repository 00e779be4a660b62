"""The page: `build_app(config) -> gr.Blocks`, wiring components to the plain handlers in handlers.py.

Order on the page follows what a musician does, and fits a phone: the prompt, the length, Generate/Stop,
the results; everything else is under "More settings" (closed)."""

from __future__ import annotations

import functools

import gradio as gr

from musicmha.app.about import about_summary, model_card
from musicmha.app.handlers import AppConfig, Handlers, button_labels
from musicmha.app.history import new_session
from musicmha.app.regenerate import Regenerate
from musicmha.app.settings import (CHOOSE, CONTINUE_SETTINGS, FILL_SETTINGS, INSTRUMENT_MODES, KEEP, LABELS, LIMITS,
                                   MAX_PROMPT_TOKENS, MAX_VARIATIONS, METERS, MODEL_METER, PROGRAM_CHOICES)
from musicmha.app.views import placeholder_html

TITLE = "musicmha: continue a piece of music"
# Gradio's cache (numpy audio it converts to WAV, uploads): swept hourly of files older than two hours.
DELETE_CACHE = (3600, 7200)
# Without the waveform, Gradio's player plays through its <audio> element in the page, whose events the
# playhead script hears (the waveform player's own audio element is not in the document); the piano roll
# under each player shows the music instead.
PLAIN_PLAYER = gr.WaveformOptions(show_recording_waveform=False)


def _slots(count: float | None) -> list:
    """Show as many result slots as variations asked for (the first always)."""
    n = int(count or 1)
    return [gr.Column(visible=index < n) for index in range(MAX_VARIATIONS)]


def _rewound(count: int = MAX_VARIATIONS) -> list:
    """Players back at 0:00. Gradio's player keeps the position it was left at (its `playback_position`) and
    puts the next audio it is given there: a new result would start where the old one stopped."""
    return [gr.Audio(playback_position=0) for _ in range(count)]


def _fresh_slots(count: float | None) -> list:
    """Before a run: the slots it fills, every result's player back at 0:00 for the audio to come, the result
    buttons inactive until there are results, and Stop active."""
    return [*_slots(count), *_rewound(), *[gr.Button(interactive=False)] * MAX_VARIATIONS, gr.Button(interactive=True)]


def _run_over() -> gr.Button:
    """Stop is active only while something runs."""
    return gr.Button(interactive=False)


def _can_regenerate(prompt: str | None) -> gr.Button:
    """Regenerating bars needs a prompt."""
    return gr.Button(interactive=bool(prompt))


def _show_restored(text: str | None) -> tuple:
    """Handlers.restore's status line, when it wrote one (None: the prompt did not change)."""
    return (gr.skip() if text is None else text), None


def _no_range() -> tuple:
    """The bar fields empty on a new page (gradio's Number shows 0 for no value until it is given one)."""
    return None, None


def _slots_with_results(results: list[dict] | None) -> list:
    """After a run: a slot per variation made (one stopped before its notes says so in its slot)."""
    return [gr.Column(visible=index == 0 or index < len(results or [])) for index in range(MAX_VARIATIONS)]


def _length_input(unit: str) -> gr.Number:
    # No `maximum`: gradio checks it server-side against the first configuration (bars), which would
    # refuse token lengths; the handler checks the limit of the chosen unit instead.
    default = {"bars": 4, "seconds": 10, "tokens": 256}[unit]
    return gr.Number(value=default, minimum=1, step=1, label=f"Length ({unit}, at most {LIMITS[unit]})",
                     elem_id="length")


def _label(key: str) -> dict:
    label, info = LABELS[key]
    return {"label": label, "info": info}


def build_app(config: AppConfig) -> gr.Blocks:
    handlers = Handlers(config)
    fill = Regenerate(handlers)
    checkpoint_choices = [(p.name, str(p)) for p in config.checkpoints]
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE, analytics_enabled=False) as app:
        session, results = gr.State(new_session()), gr.State([])
        # The prompt file the bar range and the results were last set for (see Regenerate.choose, Handlers.restore)
        range_for, results_for = gr.State(None), gr.State(None)
        restored = gr.State(None)  # the status line Handlers.restore writes, on its way to the page
        gr.Markdown(f"## {TITLE}\nDrop a MIDI file or pick an example, listen, then let the model continue it "
                    "or regenerate some of its bars. Continue from a result you like; undo and redo walk your "
                    "history.")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                prompt_file = gr.File(label="Drop a MIDI file (.mid / .midi)", file_types=[".mid", ".midi"],
                                      type="filepath", elem_id="prompt-file", height=110)
                example = gr.Dropdown(list(config.examples), value=None, label="...or an example",
                                      elem_id="example")
                with gr.Row():
                    # min_width 0: the three stay on one line on a phone
                    empty = gr.Button("Start from nothing", size="sm", elem_id="empty", min_width=0, scale=2)
                    undo = gr.Button("Undo", size="sm", elem_id="undo", interactive=False, min_width=0)
                    redo = gr.Button("Redo", size="sm", elem_id="redo", interactive=False, min_width=0)
                prompt_info = gr.Markdown("No prompt: the model starts from nothing.", elem_id="prompt-info")
                history_md = gr.Markdown("", elem_id="history")
                # The bar range sits beside the prompt's roll, in the room this column has under the prompt's
                # name, so the results stay where they were. No minimum/maximum: gradio would check them
                # against the first prompt's bars; the handlers check the current prompt and the model.
                with gr.Row(equal_height=True, elem_id="bar-range"):
                    first_bar = gr.Number(None, precision=0, label="From bar", elem_id="first-bar", min_width=0)
                    last_bar = gr.Number(None, precision=0, label="To bar", elem_id="last-bar", min_width=0)
                    regenerate = gr.Button("Regenerate these bars", elem_id="regenerate", min_width=0, scale=2,
                                           interactive=False)
                # What Generate reads (and the API's prompt file); the name is shown in the info line.
                current = gr.File(label="Current prompt", interactive=False, elem_id="current-prompt",
                                  elem_classes="mm-hidden")
            with gr.Column(scale=2):
                prompt_audio = gr.Audio(label="Prompt", type="numpy", interactive=False, elem_id="prompt-audio",
                                        waveform_options=PLAIN_PLAYER)
                prompt_roll = gr.HTML(placeholder_html("No prompt: the model starts from nothing."),
                                      elem_id="prompt-roll", padding=False)

        with gr.Row(equal_height=True):
            unit = gr.Radio(list(LIMITS), value="bars", label="Length in", elem_id="unit")
            length = _length_input("bars")
            variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations", elem_id="variations")
        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            stop = gr.Button("Stop (keeps what is made)", variant="stop", elem_id="stop", interactive=False)
        status = gr.Markdown("", elem_id="status")
        full_view = gr.Checkbox(False, label="Show the whole piece (default: the prompt's last 2 bars, then the "
                                "continuation, or 2 bars either side of regenerated bars; the MIDI download is "
                                "always the whole piece)", elem_id="full-view")

        slots, audios, rolls, midis, continues = [], [], [], [], []
        with gr.Row(elem_id="results"):
            for index in range(MAX_VARIATIONS):
                n = index + 1
                with gr.Column(visible=index == 0, min_width=0) as slot:
                    audios.append(gr.Audio(label=f"Variation {n}", type="numpy", interactive=False,
                                           elem_id=f"result-audio-{n}", waveform_options=PLAIN_PLAYER))
                    rolls.append(gr.HTML("", elem_id=f"result-roll-{n}", padding=False))
                    midis.append(gr.File(label="MIDI (whole piece)", interactive=False,
                                         elem_id=f"result-midi-{n}", height=60))
                    continues.append(gr.Button("Continue this one", size="sm", elem_id=f"continue-{n}",
                                               interactive=False))
                slots.append(slot)

        with gr.Accordion("More settings", open=False, elem_id="settings"):
            with gr.Row():
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, **_label("temperature"))
                top_k = gr.Slider(0, 200, value=0, step=1, **_label("top_k"))
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.01, **_label("top_p"))
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, elem_id="seed", **_label("seed"))
                random_seed = gr.Checkbox(value=True, label="Random seed", elem_id="random-seed")
                seed_used = gr.Number(label="Seed of the last run (variation k has this seed + k - 1)",
                                      interactive=False, precision=0,
                                      elem_id="seed-used")
            with gr.Row():
                instruments_mode = gr.Radio(list(INSTRUMENT_MODES), value=KEEP, label="Instruments",
                                            elem_id="instruments-mode")
                programs = gr.Dropdown(PROGRAM_CHOICES, value=[0], multiselect=True, elem_id="programs",
                                       label="Instruments to use (General MIDI)", visible=False)
                drums = gr.Checkbox(value=True, label="Drums", elem_id="drums", visible=False)
                allow_early_end = gr.Checkbox(value=False, elem_id="early-end",
                                              label="Let the model end the piece before the length asked for")
            with gr.Row():
                tempo = gr.Number(value=0, minimum=0, label="Tempo in BPM (from nothing only; 0: the model's choice)",
                                  elem_id="tempo")
                time_signature = gr.Dropdown(list(METERS), value=MODEL_METER, allow_custom_value=True,
                                             label="Time signature (from nothing only)", elem_id="time-signature")
            with gr.Row():
                prompt_tokens = gr.Slider(0, MAX_PROMPT_TOKENS, value=0, step=16, **_label("prompt_tokens"))
                checkpoint = gr.Dropdown(checkpoint_choices, label="Model checkpoint", elem_id="checkpoint",
                                         value=str(config.checkpoint) if config.checkpoint else None)

        with gr.Accordion("About the model", open=False, elem_id="about"):
            about = gr.Markdown(about_summary(config.checkpoint))
            with gr.Accordion("Full model card, data and training your own", open=False):
                card = gr.Markdown(model_card(config.checkpoint))

        # Prompt: every change goes through the session history (the prompt left keeps the results shown with
        # it) and shows the same outputs; then what belonged to the last prompt follows the new one: the bar
        # range (its own, else its last 2 bars) drawn on its roll, the example menu, and its results (none yet:
        # cleared).
        shown = [current, prompt_audio, prompt_roll, prompt_info, history_md, undo, redo, session]
        prompt_changes = [
            prompt_file.upload(handlers.upload, inputs=[prompt_file, session, results], outputs=[prompt_file, *shown],
                               api_name="preview", concurrency_limit=2, show_progress_on=prompt_audio),
            example.input(handlers.pick_example, inputs=[example, session, results], outputs=shown,
                          api_visibility="private", show_progress_on=prompt_audio),
            empty.click(handlers.start_from_nothing, inputs=[session, results], outputs=shown,
                        api_visibility="private", show_progress_on=prompt_audio),
            undo.click(handlers.undo, inputs=[session, results], outputs=shown, api_visibility="private",
                       show_progress_on=prompt_audio),
            redo.click(handlers.redo, inputs=[session, results], outputs=shown, api_visibility="private",
                       show_progress_on=prompt_audio)]
        for index, button in enumerate(continues):
            prompt_changes.append(button.click(functools.partial(handlers.continue_from, index),
                                               inputs=[results, session], outputs=shown, api_visibility="private",
                                               show_progress_on=prompt_audio))
        # The prompt's player back at 0:00 at once, for the prompt to come (see _rewound)
        gr.on([prompt_file.upload, example.input, empty.click, undo.click, redo.click, *[c.click for c in continues]],
              lambda: _rewound(1)[0], outputs=prompt_audio, queue=False, api_visibility="private",
              show_progress="hidden")
        # One lane, first come first served, for the range's drawings: a prompt's late redraw can then never
        # land after (and undo) a range typed later. Each takes a fraction of a second.
        for change in prompt_changes:
            change.success(fill.choose, inputs=[current, session, range_for],
                           outputs=[first_bar, last_bar, prompt_roll, range_for], api_visibility="private",
                           show_progress="hidden", concurrency_id="bar-range", concurrency_limit=1)
            change.success(_can_regenerate, inputs=current, outputs=regenerate, queue=False, api_visibility="private")
            # the status line is written by a step of its own, off the queue: an output of a queued step shows
            # gradio's "queue: 1/1 | processing" in it, whatever show_progress says
            (change.success(handlers.restore, inputs=[current, session, results_for, full_view],
                            outputs=[example, restored, *audios, *rolls, *midis, results, *slots, *continues,
                                     results_for], api_visibility="private", show_progress="hidden")
             .then(_show_restored, inputs=restored, outputs=[status, restored], queue=False,
                   api_visibility="private", show_progress="hidden"))
        unit.change(_length_input, inputs=unit, outputs=length, queue=False, api_visibility="private")
        instruments_mode.change(lambda mode: [gr.Dropdown(visible=mode == CHOOSE), gr.Checkbox(visible=mode == CHOOSE)],
                                inputs=instruments_mode, outputs=[programs, drums], queue=False,
                                api_visibility="private")
        checkpoint.change(lambda value: (about_summary(handlers.checkpoint_folder(value)),
                                         model_card(handlers.checkpoint_folder(value))),
                          inputs=checkpoint, outputs=[about, card], queue=False, api_visibility="private")
        (full_view.change(_rewound, outputs=audios, queue=False, api_visibility="private")
         .then(handlers.views, inputs=[full_view, results], outputs=[*audios, *rolls], api_visibility="private",
               show_progress="hidden"))

        # The page's settings by name (settings.CONTINUE_SETTINGS / FILL_SETTINGS name them in the API's order):
        # the handlers receive them as keywords and make one request of them.
        fields = dict(unit=unit, length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                      random_seed=random_seed, variations=variations, prompt_tokens=prompt_tokens,
                      checkpoint=checkpoint, instruments_mode=instruments_mode, programs=programs, drums=drums,
                      allow_early_end=allow_early_end, tempo=tempo, time_signature=time_signature)
        settings = {name: fields[name] for name in CONTINUE_SETTINGS}
        # A bad value stops the chain at the check: one message, nothing else on the page changes.
        run = (generate.click(handlers.check, inputs=[current], inputs_kwargs=settings, api_visibility="private",
                              show_progress="hidden", concurrency_limit=None)
               .success(_fresh_slots, inputs=variations, outputs=[*slots, *audios, *continues, stop], queue=False,
                        api_visibility="private")
               .success(handlers.generate, inputs=[current],
                        inputs_kwargs={**settings, "full_view": full_view, "session": session},
                        outputs=[status, seed_used, *audios, *rolls, *midis, results], api_name="generate",
                        concurrency_id="generate", show_progress="hidden"))
        run.then(_run_over, outputs=stop, queue=False, api_visibility="private")
        (run.then(_slots_with_results, inputs=results, outputs=slots, queue=False, api_visibility="private")
         .then(button_labels, inputs=results, outputs=continues, queue=False, api_visibility="private"))

        # Regenerate these bars: the range is drawn on the prompt's roll as it is typed, and runs like Generate
        # (same check first, same slots, same Stop: one job per session).
        for field in (first_bar, last_bar):
            field.input(fill.mark, inputs=[current, first_bar, last_bar], outputs=prompt_roll,
                        api_visibility="private", show_progress="hidden", trigger_mode="always_last",
                        concurrency_id="bar-range", concurrency_limit=1)
        fill_settings = {name: fields[name] for name in FILL_SETTINGS}
        refill = (regenerate.click(fill.check, inputs=[current, first_bar, last_bar], inputs_kwargs=fill_settings,
                                   api_visibility="private", show_progress="hidden", concurrency_limit=None)
                  .success(_fresh_slots, inputs=variations, outputs=[*slots, *audios, *continues, stop], queue=False,
                           api_visibility="private")
                  .success(fill.regenerate, inputs=[current, first_bar, last_bar],
                           inputs_kwargs={**fill_settings, "full_view": full_view, "session": session},
                           outputs=[status, seed_used, *audios, *rolls, *midis, results], api_name="regenerate",
                           concurrency_id="generate", show_progress="hidden"))
        refill.then(_run_over, outputs=stop, queue=False, api_visibility="private")
        (refill.then(_slots_with_results, inputs=results, outputs=slots, queue=False, api_visibility="private")
         .then(button_labels, inputs=results, outputs=continues, queue=False, api_visibility="private"))
        stop.click(handlers.stop, queue=False, api_visibility="private", show_progress="hidden")
        app.load(_no_range, outputs=[first_bar, last_bar], queue=False, api_visibility="private",
                 show_progress="hidden")
    return app
