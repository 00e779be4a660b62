"""Corrupt checkpoint folders: every way config.json, model.safetensors or tokenizer.json can be wrong is one
of our errors, on one line, naming the file and the problem — from the library, the CLI and the app."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_helpers import BACH, make_tiny_checkpoint
from test_checkpoint import _edit_config

from musicmha.cli import main
from musicmha.errors import MusicmhaError
from musicmha.generation.music_generator import MusicGenerator
from musicmha.data.tokenizer import MusicTokenizer, TokenizerConfig


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("good") / "ckpt")


def _truncate(fraction: float):
    def edit(folder: Path) -> None:
        weights = folder / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[:int(len(data) * fraction)])
    return edit


def _config(**changes):
    return lambda folder: _edit_config(folder, **changes)


def _write(name: str, content: bytes):
    return lambda folder: (folder / name).write_bytes(content)


def _other_tokenizer(folder: Path) -> None:  # a valid tokenizer.json with a smaller vocabulary
    MusicTokenizer.from_config(TokenizerConfig(num_velocities=8)).save(folder)


def _tokenizer_kind(kind: str):
    def edit(folder: Path) -> None:
        path = folder / "tokenizer.json"
        path.write_text(path.read_text().replace('"tokenization": "REMI"', f'"tokenization": "{kind}"'))
    return edit


# (edit, the file the message must name, words the message must contain)
CASES = {
    "weights-empty": (_truncate(0.0), "model.safetensors", "not a readable safetensors file"),
    "weights-huge-header-length": (_write("model.safetensors", b"\x10" * 8), "model.safetensors",
                                   "not a readable safetensors file"),
    "weights-half": (_truncate(0.5), "model.safetensors", "not a readable safetensors file"),
    "weights-last-byte-cut": (_truncate(0.99999), "model.safetensors", "not a readable safetensors file"),
    "weights-missing": (lambda f: (f / "model.safetensors").unlink(), "model.safetensors", "not found"),
    "config-unknown-field": (_config(attention_kernel="flash"), "config.json", "unknown field.*attention_kernel"),
    "config-missing-vocab": (_config(vocab_size=None), "config.json", "missing required field vocab_size"),
    "config-missing-d_model": (_config(d_model=None), "config.json", "do not match"),  # default 256 != 32
    "config-wrong-type": (_config(n_layers="two"), "config.json", "n_layers must be an integer"),
    "config-huge-vocab": (_config(vocab_size=10**12), "config.json", "do not match"),  # no 128 TB allocation
    "config-invalid-json": (_write("config.json", b'{"vocab_size": 530,'), "config.json", "not valid JSON"),
    "config-empty": (_write("config.json", b""), "config.json", "not valid JSON"),
    "config-binary": (_write("config.json", b"\xff\xfe\x00\x01"), "config.json", "not valid JSON"),
    "config-a-list": (_write("config.json", b"[1, 2]"), "config.json", "expected a JSON object"),
    "tokenizer-other-vocab": (_other_tokenizer, "tokenizer.json", "does not belong to this model"),
    "tokenizer-truncated": (lambda f: _write("tokenizer.json", (f / "tokenizer.json").read_bytes()[:300])(f),
                            "tokenizer.json", "not valid JSON"),
    "tokenizer-a-list": (_write("tokenizer.json", b"[]"), "tokenizer.json", "not a JSON object"),
    "tokenizer-unknown-kind": (_tokenizer_kind("Foo"), "tokenizer.json", "unknown tokenization 'Foo'"),
    "tokenizer-multi-stream-kind": (_tokenizer_kind("MMM"), "tokenizer.json", "unknown tokenization 'MMM'"),
    "tokenizer-missing": (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json", "no tokenizer file"),
}


def _broken(good: Path, tmp_path: Path, name: str) -> tuple[Path, str, str]:
    edit, file, words = CASES[name]
    folder = tmp_path / "broken"
    shutil.copytree(good, folder)
    edit(folder)
    return folder, file, words


@pytest.mark.parametrize("name", list(CASES))
def test_library_error_names_the_file_and_the_problem(good, tmp_path, name):
    folder, file, words = _broken(good, tmp_path, name)
    with pytest.raises(MusicmhaError, match=words) as info:
        MusicGenerator.from_pretrained(folder, device="cpu")
    message = str(info.value)
    assert str(folder / file) in message and "\n" not in message, message


@pytest.mark.parametrize("name", ["weights-half", "config-unknown-field", "tokenizer-other-vocab"])
def test_cli_prints_one_line_and_exits_2(good, tmp_path, capsys, name):
    folder, file, _ = _broken(good, tmp_path, name)
    assert main(["generate", "--checkpoint", str(folder), "--prompt", str(BACH), "--max-new-tokens", "8",
                 "--out", str(tmp_path / "out.mid")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and file in err, err
    assert not (tmp_path / "out.mid").exists()


def test_app_shows_one_line_naming_the_file(good, tmp_path):
    gr = pytest.importorskip("gradio")
    from musicmha.app.handlers import AppConfig, Handlers
    from musicmha.app.service import ModelCache, TempFiles

    folder, file, _ = _broken(good, tmp_path, "weights-last-byte-cut")
    handlers = Handlers(AppConfig(checkpoints=[folder], checkpoint=folder, examples={}, cache=ModelCache(),
                                  files=TempFiles(tmp_path / "files")))
    with pytest.raises(gr.Error) as info:
        list(handlers.generate(str(BACH), unit="tokens", length=8, seed=0, random_seed=False))
    assert file in info.value.message and "\n" not in info.value.message
