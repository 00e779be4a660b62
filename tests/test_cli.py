import subprocess
import sys

import pytest
from conftest import tiny_config

from musicmha import MusicTransformer
from musicmha.cli import main


def test_help_lists_the_subcommands():
    result = subprocess.run([sys.executable, "-m", "musicmha", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ("info",):
        assert name in result.stdout


def test_info_describes_a_checkpoint(tmp_path, capsys):
    model = MusicTransformer(tiny_config())
    model.save_pretrained(tmp_path)
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{model.num_parameters():,}" in out and '"position": "relative"' in out


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("musicmha info: error:") and "not found" in err and "\n" not in err


def test_unknown_subcommand_is_an_argparse_error():
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def _train_parser():
    import argparse

    from musicmha.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def _as_field_value(shown: str, default):
    """A default as `--help` prints it, read back as the type of the dataclass default."""
    if isinstance(default, bool):
        return {"true": True, "false": False}[shown]
    return type(default)(shown)


def test_every_train_flag_has_help_choices_and_the_dataclass_default(capsys, monkeypatch):
    import dataclasses
    import re

    from musicmha.nn.config import ModelConfig
    from musicmha.training.config import MODEL_FIELDS, TrainConfig

    parser = _train_parser()
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    assert all(a.help and a.help.strip() for a in actions.values())  # --help and --config too
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping: argparse breaks lines at hyphens too
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name, f in fields.items():
        action = actions[name]
        assert action.default is None, name  # presets and --config fill in what no flag sets
        assert f.metadata["help"] and action.help.startswith(f.metadata["help"]), name
        assert f"--{name.replace('_', '-')}" in text and f.metadata["help"] in text, name
        shown = re.fullmatch(r".+ \(default: (.+)\)", action.help, re.S).group(1)
        if f.default in (None, ""):  # filled in later or required: the field's own words, never "None"
            assert shown == f.metadata["shown"] and shown.strip() and "None" not in shown, name
        else:
            assert _as_field_value(shown, f.default) == f.default, (name, shown)
        choices = f.metadata.get("choices")
        assert (list(action.choices) if action.choices else None) == (list(choices) if choices else None), name
        if choices:
            assert "{" + ",".join(choices) + "}" in text, name
    assert {n for n, f in fields.items() if f.metadata.get("choices")} == {
        "preset", "position", "attention_backend", "mixed_precision", "part_layout"}
    # The model options are documented once, in ModelConfig; where the help names a plain default
    # ("relative, or the checkpoint's ..."), it is ModelConfig's.
    resolved = TrainConfig(data="d", out="o")
    assert fields["preset"].metadata["shown"].startswith(resolved.preset)
    for name in MODEL_FIELDS:
        model_field = ModelConfig.__dataclass_fields__[name]
        assert fields[name].metadata["help"] == model_field.metadata["help"], name
        assert fields[name].metadata.get("choices") == model_field.metadata.get("choices"), name
        first = fields[name].metadata["shown"].split(",")[0]
        if not first.startswith("the preset's") and " " not in first:
            assert _as_field_value(first, model_field.default) == model_field.default, name


def test_train_flags_with_a_fixed_set_refuse_other_values(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", "d", "--out", "o", "--position", "sinusoid"])
    assert info.value.code == 2
    assert "invalid choice: 'sinusoid'" in capsys.readouterr().err
