"""Issue 30 item 8: musical words on the page (the model's own knobs under "Advanced", with the loaded model's
limits), a seed to reuse per variation, the tempo box only where it can act, and the tempo asked for written
into the MIDI file."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")

import symusic  # noqa: E402
from app_helpers import make_tiny_checkpoint  # noqa: E402

from musicmha.app.handlers import AppConfig, Handlers, new_session  # noqa: E402
from musicmha.app.service import ModelCache, TempFiles, list_examples  # noqa: E402
from musicmha.app.settings import MODEL_METER  # noqa: E402
from musicmha.app.updates import length_input, opening_fields  # noqa: E402

SETTINGS = dict(unit="bars", length=2, temperature=1.0, top_k=0, top_p=1.0, seed=5, random_seed=False,
                variations=2, prompt_tokens=0, checkpoint=None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")  # a context of 256 tokens


@pytest.fixture(scope="module")
def handlers(checkpoint, tmp_path_factory) -> Handlers:
    return Handlers(AppConfig(checkpoints=[checkpoint], checkpoint=checkpoint, examples=list_examples(),
                              files=TempFiles(tmp_path_factory.mktemp("files")), cache=ModelCache()))


def _by_id(app: gr.Blocks) -> dict:
    return {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}


def _folds(block) -> list[str]:
    """The labels of the accordions `block` sits in, innermost first."""
    labels, parent = [], block.parent
    while parent is not None:
        if isinstance(parent, gr.Accordion):
            labels.append(parent.label)
        parent = parent.parent
    return labels


def test_the_model_knobs_are_under_advanced_with_the_models_limits(handlers):
    from musicmha.app.ui import build_app

    blocks = _by_id(build_app(handlers.config))
    for elem_id in ("top-k", "top-p", "prompt-tokens"):
        assert _folds(blocks[elem_id])[:2] == ["Advanced: how the model chooses", "More settings"], elem_id
    memory = blocks["prompt-tokens"]
    assert memory.maximum == 256 and "at most 256 for this model" in memory.label  # not 2048
    assert "tokens" not in memory.label and "model steps" in memory.label
    for elem_id in ("top-k", "top-p"):  # said in musical words first; the technical name in brackets
        assert blocks[elem_id].label.split("(")[0].strip() and not blocks[elem_id].label.startswith("Top")
    assert [label for label, _ in blocks["unit"].choices] == ["bars", "seconds", "model steps"]
    assert [value for _, value in blocks["unit"].choices] == ["bars", "seconds", "tokens"]  # the API's values
    assert length_input("tokens").label == "Length (model steps, at most 2048)"
    assert "k - 1" not in blocks["seed-used"].label  # no arithmetic to find a variation's seed


def test_a_memory_beyond_the_models_context_is_one_message(handlers):
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    with pytest.raises(gr.Error, match="at most 256 model steps"):
        handlers.check(prompt, **{**SETTINGS, "prompt_tokens": 512})
    handlers.check(prompt, **{**SETTINGS, "prompt_tokens": 256})


def test_the_tempo_box_is_inactive_with_a_prompt():
    tempo, meter = opening_fields("/tmp/piece.mid")
    assert tempo.interactive is False and tempo.value == 0  # back at the model's choice: no error to raise
    assert meter.interactive is False and meter.value == MODEL_METER
    tempo, meter = opening_fields(None)
    assert tempo.interactive is True and meter.interactive is True


def test_the_tempo_asked_for_is_the_tempo_in_the_file(handlers):
    """100 BPM asked gave 100.97 (read as 101): the tokenizer's nearest tempo step."""
    *_, records = list(handlers.generate(None, **{**SETTINGS, "tempo": 100}))[-1]
    for record in records:
        score = symusic.Score(record["midi"])
        assert score.tempos[0].time == 0 and score.tempos[0].mspq == 600_000  # exactly 100 BPM
        assert {round(t.qpm, 3) for t in score.tempos} == {100.0}  # held, as the app asks


def test_use_this_seed_sets_what_makes_a_variation_again(handlers):
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    *_, records = list(handlers.generate(prompt, **SETTINGS))[-1]
    seed, random_seed, variations, first, last, status = handlers.use_seed(1, records)
    assert (seed, random_seed, variations) == (records[1]["seed"], False, 1) and seed == 6
    assert first == gr.skip() and "'Generate'" in status and "variation 2's" in status
    *_, again = list(handlers.generate(prompt, **{**SETTINGS, "seed": seed, "variations": 1}))[-1]
    assert symusic.Score(again[0]["midi"]).dumps_midi() == symusic.Score(records[1]["midi"]).dumps_midi()
    kept = [{**records[0], "bars": [2, 3]}]
    assert handlers.use_seed(0, kept)[3:5] == (2, 3)  # regenerated bars: their range too
