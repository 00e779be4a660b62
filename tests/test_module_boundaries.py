"""Who may import what, read from the package's source with ast (no import runs): miditok stays behind
musicmha/data/tokenizer.py, and the model layer never imports generation."""

import ast
from pathlib import Path

import musicmha

PACKAGE = Path(musicmha.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (top level, functions, TYPE_CHECKING)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _importers(prefix: str) -> set[str]:
    return {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
            if any(name == prefix or name.startswith(prefix + ".") for name in _imports(path))}


def test_only_the_tokenizer_imports_miditok():
    assert _importers("miditok") == {"data/tokenizer.py"}


def test_the_model_layer_does_not_import_generation():
    assert not {name for name in _importers("musicmha.generation") if name.startswith("nn/")}


def test_the_walk_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from miditok.constants import X\n    import miditok\n")
    assert {"miditok", "miditok.constants", "miditok.constants.X"} <= _imports(source)


def test_the_tests_have_one_conftest():
    # Test modules `from conftest import tiny_config`; pytest imports every conftest.py under the same
    # module name, so a second one (tests/data/conftest.py once did this) breaks collection in CI.
    tests = Path(__file__).resolve().parent
    assert [str(path.relative_to(tests)) for path in tests.rglob("conftest.py")] == ["conftest.py"]
