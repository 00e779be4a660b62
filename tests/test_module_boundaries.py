"""Who may import what, read from the package's source with ast (no import runs).

miditok stays behind musicmha/data/tokenizer.py; every file name is in musicmha/files.py; the import graph
between musicmha modules has no cycle; and no module imports a layer above its own. The layers, lowest first (a
module may import its own part and any lower layer, never a sibling part of its own layer nor anything above):

  1. errors | files (every file name): import nothing.
  2. atomic_files | transfer | assets | the package root (`__version__`, the error classes; its lazy attribute
     table loads the model through importlib, not an import statement): import at most layer 1.
  3. nn (the network) | data (MIDI in, tokens out): the two halves of a checkpoint, each ignorant of the other,
     so the tokenizer runs without torch and the model without miditok.
  4. checkpoint (loads and saves nn's model with data's tokenizer) | render (MIDI to audio and images).
  5. generation: sampling from a model under the grammar of its tokenizer (nn, data, checkpoint).
  6. evaluation | training: score and train models (generation's copy head included).
  7. app (the web UI); 8. cli (the console command, which starts the app too); 9. __main__.

Every import statement counts, those inside functions too (a function-level import hides a cycle, it does not
remove it); only `if TYPE_CHECKING:` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import musicmha
from musicmha import files

PACKAGE = Path(musicmha.__file__).resolve().parent

# The parts of each layer, lowest first (see the docstring). "musicmha" is the package root alone.
LAYERS: list[list[str]] = [
    ["musicmha.errors", "musicmha.files"],
    ["musicmha.atomic_files", "musicmha.transfer", "musicmha.assets", "musicmha"],
    ["musicmha.nn", "musicmha.data"],
    ["musicmha.checkpoint", "musicmha.render"],
    ["musicmha.generation"],
    ["musicmha.evaluation", "musicmha.training"],
    ["musicmha.app"],
    ["musicmha.cli"],
    ["musicmha.__main__"],
]

# Upward imports still in the tree, as (importer, imported part); an entry no longer found is harmless.
KNOWN_UPWARD: set[tuple[str, str]] = set()
# A module-level constant holding a file name ("config.json"): those belong in musicmha/files.py.
FILE_NAME = re.compile(r"[\w.-]+\.(json|jsonl|safetensors|md|txt|yaml|yml|bin|idx|npy|pt)")
# File names still defined outside files.py, as "module: name"; an entry no longer found is harmless.
KNOWN_FILE_NAMES: set[str] = set()


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


def _module_name(path: Path) -> str:
    parts = ["musicmha", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST):
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` (their `else:` branch does run)."""
    for child in ast.iter_child_nodes(tree):
        if _is_type_checking(child):
            for node in child.orelse:
                yield node
                yield from _statements(node)
            continue
        yield child
        yield from _statements(child)


def _musicmha_imports(module: str, source: str) -> set[str]:
    """The musicmha modules that `module` imports at run time: `from musicmha.x import y` names the module
    musicmha.x.y when y is one, else musicmha.x; relative imports are resolved against `module`."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _statements(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
    return {name for name in found if name in MODULES and name != module}


def _graph() -> dict[str, set[str]]:
    return {module: _musicmha_imports(module, path.read_text(encoding="utf-8")) for module, path in MODULES.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (depth-first search, three colours)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return path[path.index(target):] + [target]
            if target not in done:
                found = visit(target)
                if found:
                    return found
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            found = visit(start)
            if found:
                return found
    return None


def _part(module: str) -> str:
    """The entry of LAYERS a module belongs to: the longest one that is the module or a package above it."""
    parts = [p for layer in LAYERS for p in layer
             if module == p or (p != "musicmha" and module.startswith(p + "."))]
    if not parts:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")
    return max(parts, key=len)


def _layer(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def _upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported part) for every import of a higher layer or of a sibling part of the same layer."""
    found = set()
    for module, targets in graph.items():
        mine = _part(module)
        for target in targets:
            theirs = _part(target)
            if theirs != mine and _layer(theirs) >= _layer(mine):
                found.add((module, theirs))
    return found


def test_only_the_tokenizer_imports_miditok():
    assert _importers("miditok") == {"data/tokenizer.py"}


def test_the_walk_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from miditok.constants import X\n    import miditok\n")
    assert {"miditok", "miditok.constants", "miditok.constants.X"} <= _imports(source)


def test_the_musicmha_imports_of_a_module():
    source = ("from typing import TYPE_CHECKING\n"
              "from musicmha import checkpoint, __version__\n"
              "from musicmha.nn.model import MusicTransformer\n"
              "from . import fim\n"
              "if TYPE_CHECKING:\n    from musicmha.generation import sampling\n"
              "else:\n    import musicmha.errors\n"
              "def f():\n    from musicmha.data.tokenizer import MusicTokenizer\n")
    assert _musicmha_imports("musicmha.data.prepare", source) == {
        "musicmha.checkpoint", "musicmha", "musicmha.nn.model", "musicmha.data.fim", "musicmha.errors",
        "musicmha.data.tokenizer"}


def test_the_cycle_search():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


def test_the_package_has_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_is_in_a_layer():
    for module in MODULES:
        _part(module)


def test_no_module_imports_a_higher_layer():
    found = _upward(_graph()) - KNOWN_UPWARD
    assert not found, "upward or sideways imports: " + ", ".join(f"{m} imports {part}" for m, part in sorted(found))


def test_the_layer_rule_sees_upward_and_sideways_imports():
    graph = {"musicmha.nn.model": {"musicmha.files", "musicmha.nn.config", "musicmha.checkpoint"},
             "musicmha.data.tokenizer": {"musicmha.nn.model", "musicmha.data.fim"},
             "musicmha.cli": {"musicmha", "musicmha.app.server"}}
    assert _upward(graph) == {("musicmha.nn.model", "musicmha.checkpoint"), ("musicmha.data.tokenizer", "musicmha.nn")}
    assert _part("musicmha.errors") == "musicmha.errors" and _part("musicmha") == "musicmha"


def test_every_file_name_is_in_files_and_means_one_file():
    elsewhere = [f"{module}: {node.value.value}" for module, path in MODULES.items() if module != "musicmha.files"
                 for node in ast.parse(path.read_text(encoding="utf-8")).body
                 if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant)
                 and isinstance(node.value.value, str) and FILE_NAME.fullmatch(node.value.value)]
    elsewhere = sorted(set(elsewhere) - KNOWN_FILE_NAMES)
    assert elsewhere == [], "file names outside musicmha/files.py: " + ", ".join(elsewhere)
    names = {name: value for name, value in vars(files).items() if name.isupper()}
    assert len(set(names.values())) == len(names), names


def test_the_tests_have_one_conftest():
    # Test modules `from conftest import tiny_config`; pytest imports every conftest.py under the same
    # module name, so a second one (tests/data/conftest.py once did this) breaks collection in CI.
    tests = Path(__file__).resolve().parent
    assert [str(path.relative_to(tests)) for path in tests.rglob("conftest.py")] == ["conftest.py"]
