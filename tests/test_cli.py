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
