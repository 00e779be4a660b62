"""The page: `build_app(config) -> gr.Blocks`, wiring components to the plain handlers in handlers.py.

Order on the page follows what a musician does, and fits a phone: the prompt, the length, Generate/Stop,
the results; everything else is under "More settings" (closed)."""

from __future__ import annotations

import functools

import gradio as gr

from musicmha.app.about import about_summary, model_card, model_context
from musicmha.app.handlers import AppConfig, Handlers, button_labels, seed_buttons
from musicmha.app.history import new_session
from musicmha.app.parts import PART_CHOICES, PART_SETTINGS, SCOPE_CHOICES, WHOLE, AddPart
from musicmha.app.regenerate import Regenerate
from musicmha.app.service import has_styles
from musicmha.app.settings import (CHOOSE, CONTINUE_SETTINGS, FILL_SETTINGS, INSTRUMENT_MODES, KEEP, LIMITS,
                                   MAX_VARIATIONS, METERS, MODEL_METER, PROGRAM_CHOICES, STYLE_SETTINGS, UNIT_WORDS)
from musicmha.app.updates import (can_regenerate, fresh_slots, label, length_input, memory_slider, no_range,
                                  opening_fields, rewound, run_over, show_restored, slots_with_results, style_menus)
from musicmha.app.views import placeholder_html

TITLE = "musicmha: continue a piece of music"
# Gradio's cache (numpy audio it converts to WAV, uploads): swept hourly of files older than two hours.
DELETE_CACHE = (3600, 7200)
# Without the waveform, Gradio's player plays through its <audio> element in the page, whose events the
# playhead script hears (the waveform player's own audio element is not in the document); the piano roll
# under each player shows the music instead.
PLAIN_PLAYER = gr.WaveformOptions(show_recording_waveform=False)


def build_app(config: AppConfig) -> gr.Blocks:
    handlers = Handlers(config)
    fill, part = Regenerate(handlers), AddPart(handlers)
    checkpoint_choices = [(p.name, str(p)) for p in config.checkpoints]
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE, analytics_enabled=False) as app:
        session, results = gr.State(new_session()), gr.State([])
        # The prompt file the bar range and the results were last set for (see Regenerate.choose, Handlers.restore)
        range_for, results_for = gr.State(None), gr.State(None)
        restored = gr.State(None)  # the status line Handlers.restore writes, on its way to the page
        gr.Markdown(f"## {TITLE}\nDrop a MIDI file or pick an example, listen, then let the model continue it, "
                    "regenerate some of its bars, or add a part (a bass, drums, ...) under it. Continue from or keep "
                    "a result you like; undo and redo walk your history.")
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
                # What Generate reads (and the API's prompt file); the name is shown in the info line.
                current = gr.File(label="Current prompt", interactive=False, elem_id="current-prompt",
                                  elem_classes="mm-hidden")
            with gr.Column(scale=2):
                prompt_audio = gr.Audio(label="Prompt", type="numpy", interactive=False, elem_id="prompt-audio",
                                        waveform_options=PLAIN_PLAYER)
                prompt_roll = gr.HTML(placeholder_html("No prompt: the model starts from nothing."),
                                      elem_id="prompt-roll", padding=False)
                # The bar range under the roll it is drawn on (also on a phone, where the columns stack). No
                # minimum/maximum: gradio would check them against the first prompt's bars; the handlers
                # check the current prompt and the model.
                with gr.Row(equal_height=True, elem_id="bar-range"):
                    first_bar = gr.Number(None, precision=0, label="From bar", elem_id="first-bar", min_width=0)
                    last_bar = gr.Number(None, precision=0, label="To bar", elem_id="last-bar", min_width=0)
                    regenerate = gr.Button("Regenerate these bars", elem_id="regenerate", min_width=0, scale=2,
                                           interactive=False)
                # Add a part: a new track under the music, over the whole piece or the shaded bars above
                with gr.Row(equal_height=True, elem_id="add-part-row"):
                    instrument = gr.Dropdown(PART_CHOICES, value="bass", allow_custom_value=True, min_width=0,
                                             label="New part", elem_id="part-instrument", scale=2)
                    scope = gr.Radio(SCOPE_CHOICES, value=WHOLE, label="Playing over", elem_id="part-scope",
                                     min_width=0, scale=3)
                    add = gr.Button("Add a part", elem_id="add-part", min_width=0, scale=2, interactive=False)

        with gr.Row(equal_height=True):
            unit = gr.Radio([(UNIT_WORDS[u], u) for u in LIMITS], value="bars", label="Length in", elem_id="unit")
            length = length_input("bars")
            variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations", elem_id="variations")
        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            stop = gr.Button("Stop (keeps what is made)", variant="stop", elem_id="stop", interactive=False)
        status = gr.Markdown("", elem_id="status")
        full_view = gr.Checkbox(False, label="Show the whole piece (default: the prompt's last 2 bars, then the "
                                "continuation, or 2 bars either side of regenerated bars; the MIDI download is "
                                "always the whole piece)", elem_id="full-view")

        slots, audios, alones, rolls, midis, continues, reuses = [], [], [], [], [], [], []
        with gr.Row(elem_id="results"):
            for index in range(MAX_VARIATIONS):
                n = index + 1
                with gr.Column(visible=index == 0, min_width=0) as slot:
                    audios.append(gr.Audio(label=f"Variation {n}", type="numpy", interactive=False,
                                           elem_id=f"result-audio-{n}", waveform_options=PLAIN_PLAYER))
                    alones.append(gr.Audio(label=f"Variation {n}: the new part alone", type="numpy", visible=False,
                                           interactive=False, elem_id=f"result-alone-{n}",
                                           waveform_options=PLAIN_PLAYER))
                    rolls.append(gr.HTML("", elem_id=f"result-roll-{n}", padding=False))
                    midis.append(gr.File(label="MIDI (whole piece)", interactive=False,
                                         elem_id=f"result-midi-{n}", height=60))
                    with gr.Row():
                        continues.append(gr.Button("Continue this one", size="sm", elem_id=f"continue-{n}",
                                                   interactive=False, min_width=0))
                        reuses.append(gr.Button("Use this seed", size="sm", elem_id=f"reuse-{n}",
                                                interactive=False, min_width=0))
                slots.append(slot)

        with gr.Accordion("More settings", open=False, elem_id="settings"):
            with gr.Row():  # style: only for a model trained with style tokens; density and range: any model
                style, density = style_menus(has_styles(config.checkpoint, config.cache), first=True)
                pitch_range = gr.Textbox(value="", label="Pitch range of the new notes", elem_id="pitch-range",
                                         placeholder="e.g. C3-C6 or 48-84; empty: any",
                                         info="lowest and highest pitch, middle C is C4; drums are not limited")
            with gr.Row():
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, elem_id="temperature", **label("temperature"))
                seed = gr.Number(value=0, precision=0, minimum=0, elem_id="seed", **label("seed"))
                random_seed = gr.Checkbox(value=True, label="Random seed", elem_id="random-seed")
                seed_used = gr.Number(label="Seed of the last run's first variation (each variation's seed is "
                                      "under its roll; 'Use this seed' sets it here)", interactive=False,
                                      precision=0, elem_id="seed-used")
            with gr.Row():
                instruments_mode = gr.Radio(list(INSTRUMENT_MODES), value=KEEP, label="Instruments",
                                            elem_id="instruments-mode")
                programs = gr.Dropdown(PROGRAM_CHOICES, value=[0], multiselect=True, elem_id="programs",
                                       label="Instruments to use (General MIDI)", visible=False)
                drums = gr.Checkbox(value=True, label="Drums", elem_id="drums", visible=False)
                allow_early_end = gr.Checkbox(value=False, elem_id="early-end",
                                              label="Let the model end the piece before the length asked for")
            with gr.Row():
                tempo = gr.Number(value=0, minimum=0, elem_id="tempo", label="Tempo in BPM (from nothing only: a "
                                  "prompt keeps its own; 0: the model's choice)")
                time_signature = gr.Dropdown(list(METERS), value=MODEL_METER, allow_custom_value=True,
                                             label="Time signature (from nothing only)", elem_id="time-signature")
                checkpoint = gr.Dropdown(checkpoint_choices, label="Model checkpoint", elem_id="checkpoint",
                                         value=str(config.checkpoint) if config.checkpoint else None)
            # The model's own knobs, in its own units; the memory's limit is the loaded model's context.
            with gr.Accordion("Advanced: how the model chooses", open=False, elem_id="advanced"):
                with gr.Row():
                    top_k = gr.Slider(0, 200, value=0, step=1, elem_id="top-k", **label("top_k"))
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.01, elem_id="top-p", **label("top_p"))
                    prompt_tokens = memory_slider(model_context(config.checkpoint))

        with gr.Accordion("About the model", open=False, elem_id="about"):
            about = gr.Markdown(about_summary(config.checkpoint))
            with gr.Accordion("Full model card, data and training your own", open=False):
                card = gr.Markdown(model_card(config.checkpoint))

        # Prompt: every change goes through the session history (the prompt left keeps the results shown with
        # it) and shows the same outputs; then what belonged to the last prompt follows the new one: the bar
        # range (its own, else its last 2 bars) drawn on its roll, the example menu, and its results (none yet:
        # cleared).
        fresh = [*slots, *audios, *continues, *reuses, stop, *alones]  # before a run (updates.fresh_slots)
        players = [*alones, *audios]  # after one: an added part's 'alone' players (AddPart.players)
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
        # The prompt's player back at 0:00 at once, for the prompt to come (see updates.rewound)
        gr.on([prompt_file.upload, example.input, empty.click, undo.click, redo.click, *[c.click for c in continues]],
              lambda: rewound(1)[0], outputs=prompt_audio, queue=False, api_visibility="private",
              show_progress="hidden")
        # One lane, first come first served, for the range's drawings: a prompt's late redraw can then never
        # land after (and undo) a range typed later. Each takes a fraction of a second.
        for change in prompt_changes:
            change.success(fill.choose, inputs=[current, session, range_for],
                           outputs=[first_bar, last_bar, prompt_roll, range_for], api_visibility="private",
                           show_progress="hidden", concurrency_id="bar-range", concurrency_limit=1)
            for button in (regenerate, add):
                change.success(can_regenerate, inputs=current, outputs=button, queue=False, api_visibility="private")
            change.success(opening_fields, inputs=current, outputs=[tempo, time_signature], queue=False,
                           api_visibility="private")
            # the status line is written by a step of its own, off the queue: an output of a queued step shows
            # gradio's "queue: 1/1 | processing" in it, whatever show_progress says
            (change.success(handlers.restore, inputs=[current, session, results_for, full_view],
                            outputs=[example, restored, *audios, *rolls, *midis, results, *slots, *continues,
                                     results_for], api_visibility="private", show_progress="hidden")
             .then(show_restored, inputs=restored, outputs=[status, restored], queue=False,
                   api_visibility="private", show_progress="hidden")
             .then(seed_buttons, inputs=results, outputs=reuses, queue=False, api_visibility="private")
             .then(part.players, inputs=[results, full_view], outputs=players, api_visibility="private",
                   show_progress="hidden"))
        unit.change(length_input, inputs=unit, outputs=length, queue=False, api_visibility="private")
        instruments_mode.change(lambda mode: [gr.Dropdown(visible=mode == CHOOSE), gr.Checkbox(visible=mode == CHOOSE)],
                                inputs=instruments_mode, outputs=[programs, drums], queue=False,
                                api_visibility="private")
        checkpoint.change(functools.partial(model_fields, handlers), inputs=checkpoint,
                          outputs=[about, card, prompt_tokens, style, density], queue=False, api_visibility="private")
        for index, button in enumerate(reuses):  # 'Use this seed': the seed, 1 variation, and what makes it again
            button.click(functools.partial(handlers.use_seed, index), inputs=results,
                         outputs=[seed, random_seed, variations, first_bar, last_bar, status], queue=False,
                         api_visibility="private")
        (full_view.change(rewound, outputs=audios, queue=False, api_visibility="private")
         .then(handlers.views, inputs=[full_view, results], outputs=[*audios, *rolls], api_visibility="private",
               show_progress="hidden")
         .then(part.players, inputs=[results, full_view], outputs=players, api_visibility="private",
               show_progress="hidden"))

        # The page's settings by name (settings.CONTINUE_SETTINGS / FILL_SETTINGS name them in the API's order):
        # the handlers receive them as keywords and make one request of them.
        fields = dict(unit=unit, length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                      random_seed=random_seed, variations=variations, prompt_tokens=prompt_tokens,
                      checkpoint=checkpoint, instruments_mode=instruments_mode, programs=programs, drums=drums,
                      allow_early_end=allow_early_end, tempo=tempo, time_signature=time_signature, style=style,
                      density=density, pitch_range=pitch_range)
        settings = {name: fields[name] for name in CONTINUE_SETTINGS}
        # style, density, pitch range: the API's last parameters (after the whole-piece view): older callers work
        styles = {name: fields[name] for name in STYLE_SETTINGS}
        # A bad value stops the chain at the check: one message, nothing else on the page changes.
        def after_run(event) -> None:
            """What every run (Generate, Regenerate these bars, Add a part) does when it ends: Stop goes back
            to idle, and the result slots, their buttons and their players follow the results."""
            event.then(run_over, outputs=stop, queue=False, api_visibility="private")
            (event.then(slots_with_results, inputs=results, outputs=slots, queue=False, api_visibility="private")
             .then(button_labels, inputs=results, outputs=continues, queue=False, api_visibility="private")
             .then(seed_buttons, inputs=results, outputs=reuses, queue=False, api_visibility="private")
             .then(part.players, inputs=[results, full_view], outputs=players, api_visibility="private",
                   show_progress="hidden"))

        run = (generate.click(handlers.check, inputs=[current], inputs_kwargs={**settings, **styles},
                              api_visibility="private", show_progress="hidden", concurrency_limit=None)
               .success(fresh_slots, inputs=variations, outputs=fresh,
                        queue=False, api_visibility="private")
               .success(handlers.generate, inputs=[current],
                        inputs_kwargs={**settings, "full_view": full_view, "session": session, **styles},
                        outputs=[status, seed_used, *audios, *rolls, *midis, results], api_name="generate",
                        concurrency_id="generate", show_progress="hidden"))
        after_run(run)

        # Regenerate these bars: the range is drawn on the prompt's roll as it is typed, and runs like Generate
        # (same check first, same slots, same Stop: one job per session).
        for field in (first_bar, last_bar):
            field.input(fill.mark, inputs=[current, first_bar, last_bar], outputs=prompt_roll,
                        api_visibility="private", show_progress="hidden", trigger_mode="always_last",
                        concurrency_id="bar-range", concurrency_limit=1)
        fill_settings = {name: fields[name] for name in FILL_SETTINGS}
        refill = (regenerate.click(fill.check, inputs=[current, first_bar, last_bar],
                                   inputs_kwargs={**fill_settings, **styles},
                                   api_visibility="private", show_progress="hidden", concurrency_limit=None)
                  .success(fresh_slots, inputs=variations, outputs=fresh,
                           queue=False, api_visibility="private")
                  .success(fill.regenerate, inputs=[current, first_bar, last_bar],
                           inputs_kwargs={**fill_settings, "full_view": full_view, "session": session, **styles},
                           outputs=[status, seed_used, *audios, *rolls, *midis, results], api_name="regenerate",
                           concurrency_id="generate", show_progress="hidden"))
        after_run(refill)
        # Add a part: runs like Regenerate (same check first, same slots, same Stop), then its 'alone' players
        part_settings = {name: fields[name] for name in PART_SETTINGS}
        where = [current, instrument, scope, first_bar, last_bar]
        added = (add.click(part.check, inputs=where, inputs_kwargs={**part_settings, **styles},
                           api_visibility="private", show_progress="hidden", concurrency_limit=None)
                 .success(fresh_slots, inputs=variations, outputs=fresh,
                          queue=False, api_visibility="private")
                 .success(part.add_part, inputs=where,
                          inputs_kwargs={**part_settings, "full_view": full_view, "session": session, **styles},
                          outputs=[status, seed_used, *audios, *rolls, *midis, results], api_name="add_part",
                          concurrency_id="generate", show_progress="hidden"))
        after_run(added)
        stop.click(handlers.stop, queue=False, api_visibility="private", show_progress="hidden")
        app.load(no_range, outputs=[first_bar, last_bar], queue=False, api_visibility="private",
                 show_progress="hidden")
    return app


def model_fields(handlers: Handlers, value: str | None) -> tuple:
    """What follows the checkpoint chosen: the About text and card, the memory's limit (its context) and the
    Style and Density menus (active when it was trained with their tokens)."""
    folder = handlers.checkpoint_folder(value)
    return (about_summary(folder), model_card(folder), memory_slider(model_context(folder)),
            *style_menus(has_styles(folder, handlers.config.cache)))
