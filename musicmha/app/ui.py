"""The page: `build_app(config) -> gr.Blocks`, wiring components to the plain handlers in handlers.py."""

from __future__ import annotations

import gradio as gr

from .about import about_markdown
from .handlers import LIMITS, MAX_PROMPT_TOKENS, MAX_VARIATIONS, AppConfig, Handlers, new_session

TITLE = "musicmha: continue a piece of music"
# Gradio's cache (numpy audio it converts to WAV, uploads): swept hourly of files older than two hours.
DELETE_CACHE = (3600, 7200)


def _slot_visibility(*files: str | None) -> list:
    """Show a result slot (the first always) when it holds a result."""
    return [gr.Column(visible=index == 0 or bool(f)) for index, f in enumerate(files)]


def _length_input(unit: str) -> gr.Number:
    # No `maximum`: gradio checks it server-side against the first configuration (bars), which would
    # refuse token lengths; the handler checks the limit of the chosen unit instead.
    default = {"bars": 4, "seconds": 10, "tokens": 256}[unit]
    return gr.Number(value=default, minimum=1, step=1,
                     label=f"Length ({unit}, at most {LIMITS[unit]})")


def build_app(config: AppConfig) -> gr.Blocks:
    handlers = Handlers(config)
    checkpoint_choices = [(p.name, str(p)) for p in config.checkpoints]
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE, analytics_enabled=False) as app:
        session = gr.State(new_session())
        gr.Markdown(f"## {TITLE}\nUpload a MIDI file or pick an example, listen to it, then let the model "
                    "continue it. Continue from a result you like, or undo to go back.")
        with gr.Row():
            with gr.Column(scale=1):
                prompt_file = gr.File(label="Prompt (.mid / .midi)", file_types=[".mid", ".midi"],
                                      type="filepath", elem_id="prompt-file")
                example = gr.Dropdown(list(config.examples), value=None, label="Example prompts",
                                      elem_id="example")
                with gr.Row():
                    empty = gr.Button("Start from nothing", size="sm")
                    undo = gr.Button("Undo", size="sm", elem_id="undo")
                prompt_info = gr.Markdown("No prompt: the model starts from nothing.", elem_id="prompt-info")
            with gr.Column(scale=2):
                prompt_audio = gr.Audio(label="Prompt", type="numpy", interactive=False, elem_id="prompt-audio")
                prompt_roll = gr.Image(label="Prompt piano roll", type="filepath", interactive=False)

        with gr.Accordion("Settings", open=True):
            with gr.Row():
                unit = gr.Radio(list(LIMITS), value="bars", label="Length in")
                length = _length_input("bars")
                variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations", elem_id="variations")
            with gr.Row():
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k (0: off)")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.01, label="Top-p (1: off)")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                random_seed = gr.Checkbox(value=True, label="Random seed")
                prompt_tokens = gr.Slider(0, MAX_PROMPT_TOKENS, value=0, step=16,
                                          label="Prompt tokens conditioning the model (0: automatic)")
                checkpoint = gr.Dropdown(checkpoint_choices, label="Checkpoint", elem_id="checkpoint",
                                         value=str(config.checkpoint) if config.checkpoint else None)

        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            stop = gr.Button("Stop", variant="stop", elem_id="stop")
        with gr.Row():
            status = gr.Markdown("", elem_id="status")
            seed_used = gr.Number(label="Seed used", interactive=False, precision=0)

        slots, audios, rolls, midis, continues = [], [], [], [], []
        with gr.Row():
            for index in range(MAX_VARIATIONS):
                with gr.Column(visible=index == 0, min_width=320) as slot:
                    audios.append(gr.Audio(label=f"Variation {index + 1}", type="numpy", interactive=False,
                                           elem_id=f"result-audio-{index + 1}"))
                    rolls.append(gr.Image(label="Piano roll (line: end of the prompt)", type="filepath",
                                          interactive=False))
                    midis.append(gr.File(label="MIDI", interactive=False, elem_id=f"result-midi-{index + 1}"))
                    continues.append(gr.Button("Continue this one", size="sm", elem_id=f"continue-{index + 1}"))
                slots.append(slot)

        with gr.Accordion("About", open=False):
            about = gr.Markdown(about_markdown(config.checkpoint))

        # Prompt: every change (upload, example, continue, undo, clear) is previewed and recorded.
        preview = prompt_file.change(handlers.clear_prompt, outputs=[prompt_audio, prompt_roll, prompt_info],
                                     queue=False, api_visibility="private")
        preview.then(handlers.show_prompt, inputs=[prompt_file, session],
                     outputs=[prompt_audio, prompt_roll, prompt_info, session], api_name="preview",
                     concurrency_limit=2)
        example.input(handlers.pick_example, inputs=example, outputs=prompt_file, api_visibility="private")
        empty.click(lambda: None, outputs=prompt_file, queue=False, api_visibility="private")
        undo.click(handlers.undo, inputs=session, outputs=[prompt_file, session], api_visibility="private")
        for button, midi in zip(continues, midis):
            button.click(handlers.continue_from, inputs=midi, outputs=prompt_file, api_visibility="private")
        unit.change(_length_input, inputs=unit, outputs=length, queue=False, api_visibility="private")
        checkpoint.change(lambda value: about_markdown(handlers.checkpoint_folder(value)), inputs=checkpoint,
                          outputs=about, queue=False, api_visibility="private")

        run = generate.click(handlers.generate,
                             inputs=[prompt_file, unit, length, temperature, top_k, top_p, seed, random_seed,
                                     variations, prompt_tokens, checkpoint],
                             outputs=[status, seed_used, *audios, *rolls, *midis], api_name="generate",
                             concurrency_id="generate")
        run.then(_slot_visibility, inputs=midis, outputs=slots, queue=False, api_visibility="private")
        stop.click(None, cancels=[run], queue=False, api_visibility="private")
    return app
