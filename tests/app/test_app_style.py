"""Issue 28 item 2 and 3 in the app: a Style menu and a Density control in musical words, active only for a model
trained with style and density tokens, sent into the request of Generate, Regenerate-bars and Continue-this-one,
shown on the result cards; the API's new parameters come last, and a style sent to a model without them is one
line."""

from __future__ import annotations

from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from app_helpers import BACH, ROOT, free_port, make_tiny_checkpoint  # noqa: E402

from musicmha.app.handlers import AppConfig, Handlers, new_session  # noqa: E402
from musicmha.app.regenerate import Regenerate  # noqa: E402
from musicmha.app.service import ModelCache, TempFiles, has_styles, list_examples  # noqa: E402
from musicmha.app.settings import (AS_PROMPT, DENSITY_CHOICES, FROM_PROMPT, NO_STYLES, STYLE_CHOICES,  # noqa: E402
                                   page_request)
from musicmha.data.styles import DENSITY_WORDS, STYLES  # noqa: E402
from musicmha.errors import ConfigError  # noqa: E402

SHIPPED = ROOT / "checkpoints" / "musicmha-1k"  # trained before style and density tokens
SETTINGS = dict(unit="bars", length=2, temperature=1.0, top_k=0, top_p=1.0, seed=5, random_seed=False,
                variations=1, prompt_tokens=0)
NO_STYLE_MESSAGE = "trained without style and density tokens"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny untrained model whose tokenizer has the style and density tokens (MusicTokenizer.from_config)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-styles").resolve()


@pytest.fixture(scope="module")
def handlers(tiny, tmp_path_factory) -> Handlers:
    checkpoints = [tiny, *([SHIPPED.resolve()] if SHIPPED.is_dir() else [])]
    return Handlers(AppConfig(checkpoints=checkpoints, checkpoint=tiny, examples=list_examples(),
                              files=TempFiles(tmp_path_factory.mktemp("files")), cache=ModelCache()))


def _by_id(app: gr.Blocks) -> dict:
    return {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}


def _spy(monkeypatch, generator, method: str) -> list:
    """Record every call of `generator.<method>`: (the request it got, the results it returned)."""
    calls, real = [], getattr(generator, method)

    def spy(*args, **kwargs):
        results = real(*args, **kwargs)
        request = next(a for a in (*args, *kwargs.values()) if type(a).__name__ == "GenerationRequest")
        calls.append((request, results))
        return results

    monkeypatch.setattr(generator, method, spy)
    return calls


def _after_bos(ids: list[int], bos: int) -> list[int]:
    """The tokens right after BOS (where the asked-for style and density go)."""
    at = ids.index(bos)
    return ids[at + 1:at + 3]


# --- the page's values as a request ---------------------------------------------------------------------
def test_the_page_request_carries_style_and_density():
    request = page_request(**SETTINGS, style="swing", density="busier")
    assert (request.style, request.density) == ("swing", "busier")
    assert page_request(**SETTINGS, style="bossa-nova", density="busy").density == 5  # a level by its word
    # the menus' words work too (an API caller may send what it reads)
    assert page_request(**SETTINGS, style="bossa nova").style == "bossa-nova"
    assert page_request(**SETTINGS, style="Bach chorale (four voices)").style == "chorale"
    assert page_request(**SETTINGS, density=3.0).density == 3


def test_from_the_prompt_and_as_the_prompt_ask_for_nothing():
    for request in (page_request(**SETTINGS), page_request(**SETTINGS, style=FROM_PROMPT, density=AS_PROMPT),
                    page_request(**SETTINGS, style="", density="")):
        assert request.style is None and request.density is None
    assert page_request(temperature=1.0, style=FROM_PROMPT, density=AS_PROMPT).style is None  # no length: infill


def test_a_bad_style_or_density_is_one_line_listing_the_choices():
    with pytest.raises(ConfigError) as error:
        page_request(**SETTINGS, style="dubstep")
    assert "\n" not in str(error.value) and "bossa-nova" in str(error.value) and "swing" in str(error.value)
    with pytest.raises(ConfigError) as error:
        page_request(**SETTINGS, density="frantic")
    assert "\n" not in str(error.value) and "busier" in str(error.value) and "very calm" in str(error.value)


def test_the_menus_are_in_musical_words():
    assert STYLE_CHOICES[0] == (FROM_PROMPT, FROM_PROMPT)
    labels = [label for label, _ in STYLE_CHOICES]
    assert "bossa nova" in labels and "Bach chorale (four voices)" in labels
    assert [value for _, value in STYLE_CHOICES[1:]] == list(STYLES)  # the values are the library's names
    assert [label for label, _ in DENSITY_CHOICES] == [AS_PROMPT, "calmer", "busier", *DENSITY_WORDS]


# --- active only for a model trained with the tokens ---------------------------------------------------
@pytest.mark.skipif(not SHIPPED.is_dir(), reason="the shipped checkpoints/musicmha-1k is not here")
def test_the_controls_are_inactive_for_the_shipped_model_and_follow_the_checkpoint(handlers, tiny):
    from musicmha.app.ui import build_app, model_fields

    assert not has_styles(SHIPPED) and has_styles(tiny)
    config = AppConfig(checkpoints=handlers.config.checkpoints, checkpoint=SHIPPED.resolve(),
                       examples=list_examples(), files=handlers.config.files, cache=handlers.config.cache)
    blocks = _by_id(build_app(config))
    assert blocks["style"].interactive is False and blocks["style"].info == NO_STYLES
    assert blocks["style"].value == FROM_PROMPT
    # density is kept by the grammar, so it works with every model
    assert blocks["density"].interactive is True and blocks["density"].value == AS_PROMPT
    # switching checkpoints: the tiny model has the tokens, the shipped one not
    *_, style, density = model_fields(handlers, str(tiny))
    assert style.interactive is True and density.interactive is True and NO_STYLES not in style.info
    *_, style, density = model_fields(handlers, str(SHIPPED.resolve()))
    assert style.interactive is False and density.interactive is True and style.info == NO_STYLES
    assert style.value == FROM_PROMPT  # back to asking for nothing


def test_the_controls_are_active_for_a_model_with_styles(handlers):
    from musicmha.app.ui import build_app

    blocks = _by_id(build_app(handlers.config))
    for elem_id in ("style", "density"):
        assert blocks[elem_id].interactive is True and blocks[elem_id].info != NO_STYLES
    assert blocks["style"].label == "Style" and blocks["style"].value == FROM_PROMPT


def test_a_loaded_model_is_asked_through_the_service(handlers, tiny, monkeypatch):
    """With the generator loaded, its tokenizer answers: no tokenizer file is read again."""
    from musicmha.app import service

    handlers.config.cache.get(tiny)

    def no_load(folder):
        raise AssertionError("the tokenizer was loaded from its file again")

    monkeypatch.setattr(service.MusicTokenizer, "load", no_load)
    assert has_styles(tiny, handlers.config.cache)


# --- into the request and the model's tokens -----------------------------------------------------------
def test_a_style_and_density_reach_the_model_after_bos(handlers, tiny, monkeypatch):
    generator = handlers.config.cache.get(tiny)
    cond, bos = generator.tokenizer.condition_tokens, generator.tokenizer.bos_id
    calls = _spy(monkeypatch, generator, "continue_midi")
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    out = list(handlers.generate(prompt, **SETTINGS, style="swing", density="busy"))[-1]
    records, roll = out[-1], out[2 + 4]  # (status, seed, 4 audios, 4 rolls, 4 MIDI files, records)
    (request, results), = calls
    assert (request.style, request.density) == ("swing", 5)
    assert _after_bos(results[0].token_ids, bos) == [cond.styles["swing"], cond.densities[4]]
    assert (records[0]["style"], records[0]["density"]) == ("swing", 5)
    assert "seed 5, style swing, density busy:" in roll  # the card's info under its roll
    # nothing asked: no style or density token, and nothing said on the card
    calls.clear()
    out = list(handlers.generate(prompt, **SETTINGS))[-1]
    ids = calls[0][1][0].token_ids
    assert not set(_after_bos(ids, bos)) & {*cond.styles.values(), *cond.densities}
    assert "seed 5: generate" in out[2 + 4] and out[-1][0]["style"] is None


def test_a_pitch_range_reaches_the_request_and_every_new_note_keeps_it(handlers, tiny, monkeypatch):
    """The pitch range box (any model): its text goes into the request, the new notes stay in it, the card
    says it, and a bad range is one line."""
    generator = handlers.config.cache.get(tiny)
    calls = _spy(monkeypatch, generator, "continue_midi")
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    out = list(handlers.generate(prompt, **SETTINGS, pitch_range="C4-G4"))[-1]
    (request, results), = calls
    assert request.pitch_range == (60, 67)
    pitches = [n.pitch for t in results[0].continuation.tracks if not t.is_drum for n in t.notes]
    assert pitches and all(60 <= p <= 67 for p in pitches)
    assert out[-1][0]["pitch_range"] == (60, 67) and "seed 5, pitches C4-G4:" in out[2 + 4]
    assert page_request(**SETTINGS, pitch_range="").pitch_range is None
    with pytest.raises(ConfigError) as error:
        page_request(**SETTINGS, pitch_range="G4-C4")
    assert "reversed" in str(error.value) and "\n" not in str(error.value)


def test_regenerating_bars_asks_for_the_style_too(handlers, tiny, monkeypatch):
    generator = handlers.config.cache.get(tiny)
    cond, bos = generator.tokenizer.condition_tokens, generator.tokenizer.bos_id
    calls = _spy(monkeypatch, generator, "infill")
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    fill_settings = dict(temperature=1.0, top_k=0, top_p=1.0, seed=3, random_seed=False, variations=1)
    *_, records = list(Regenerate(handlers).regenerate(prompt, 2, 2, **fill_settings, style="waltz"))[-1]
    (request, results), = calls
    assert request.style == "waltz" and request.density is None
    # the scaffold's prefix side opens with the asked-for style (after BOS when the piece's start fits)
    ids = results[0].token_ids
    opened = ids[ids.index(generator.tokenizer.fim_tokens.prefix) + 1:]
    assert opened[1 if opened[0] == bos else 0] == cond.styles["waltz"]
    assert records[0]["style"] == "waltz" and records[0]["bars"] == [2, 2]


def test_continue_this_one_goes_on_calmer(handlers, tiny, monkeypatch):
    """'Continue this one' makes the result the prompt; 'calmer' is one level under that prompt's own."""
    generator = handlers.config.cache.get(tiny)
    cond, bos = generator.tokenizer.condition_tokens, generator.tokenizer.bos_id
    session = new_session()
    prompt = handlers.pick_example("bach_bwv66.6_chorale", session)[0]
    *_, records = list(handlers.generate(prompt, **SETTINGS, style="chorale"))[-1]
    shown = handlers.continue_from(0, records, session)
    continued, session = shown[0], shown[-1]
    calls = _spy(monkeypatch, generator, "continue_midi")
    *_, again = list(handlers.generate(continued, session=session, **SETTINGS, style="chorale", density="calmer"))[-1]
    (request, results), = calls
    ids, new = results[0].token_ids, results[0].new_token_ids
    heard = ids[ids.index(bos) + 3:len(ids) - len(new)]  # the prompt's tokens the model heard
    level = max(1, cond.level_of(heard) - 1)
    assert _after_bos(ids, bos) == [cond.styles["chorale"], cond.densities[level - 1]]
    assert again[0]["density"] == "calmer" and again[0]["steps"] == 1


# --- a model without the tokens ----------------------------------------------------------------------------
@pytest.mark.skipif(not SHIPPED.is_dir(), reason="the shipped checkpoints/musicmha-1k is not here")
def test_a_style_for_the_shipped_model_is_one_line(handlers):
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    shipped = str(SHIPPED.resolve())
    with pytest.raises(gr.Error) as error:
        list(handlers.generate(prompt, **SETTINGS, checkpoint=shipped, style="swing"))
    assert NO_STYLE_MESSAGE in error.value.message and "\n" not in error.value.message
    with pytest.raises(gr.Error, match=NO_STYLE_MESSAGE):
        list(Regenerate(handlers).regenerate(prompt, 2, 2, checkpoint=shipped, style="swing"))


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="the shipped checkpoints/musicmha-1k is not here")
def test_the_api_takes_style_last_and_says_one_line_for_the_shipped_model(tmp_path):
    """Through the served API (gradio_client): older positional calls keep working, style and density are its
    last parameters, and a style on a model without them is the one-line message, not a traceback."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from musicmha.app.ui import build_app

    shipped = SHIPPED.resolve()
    config = AppConfig(checkpoints=[shipped], checkpoint=shipped, examples=list_examples(),
                       files=TempFiles(tmp_path / "files"), cache=ModelCache())
    app = build_app(config).queue()
    app.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True, ssr_mode=False,
               allowed_paths=[str(config.files.root)])
    try:
        client = Client(app.local_url, verbose=False, download_files=False)
        for name in ("/generate", "/regenerate"):
            names = [p["parameter_name"] for p in client.view_api(print_info=False,
                                                                  return_format="dict")["named_endpoints"][name]
                     ["parameters"]]
            assert names[-4:] == ["full_view", "style", "density", "pitch_range"], names
        with pytest.raises(AppError) as error:
            client.predict(handle_file(str(BACH)), "tokens", 8, style="swing", api_name="/generate")
        assert NO_STYLE_MESSAGE in str(error.value) and "\n" not in str(error.value)
        assert "Traceback" not in str(error.value)
        status = client.predict(handle_file(str(BACH)), "tokens", 8, 1.0, 0, 1.0, 3, False, api_name="/generate")[0]
        assert status.startswith("Done")  # positional, as callers wrote it before style existed
    finally:
        app.close()
