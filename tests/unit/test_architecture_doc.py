"""docs/architecture.md names only what exists: every module path, and the class or
name each glossary entry says lives in a module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "src" / "freshdb"
# A backticked path: a module (``x.py``) or a package (``x/``), with its folders.
PATH = re.compile(r"`((?:[\w.-]+/)*[\w.-]+(?:\.py|/))`")
# A glossary row: | **word** / **word** | what it is | where |
GLOSSARY_ROW = re.compile(r"^\| (\*\*.+?\*\*) \|.*\| (.+) \|$", re.MULTILINE)
# A word of the glossary that is a name in the code: capitalised (DatabaseServer).
CODE_NAME = re.compile(r"\*\*([A-Z][A-Za-z]*)\*\*")


def named_paths() -> list[str]:
    return sorted(set(PATH.findall(PAGE.read_text())))


def exists(path: str) -> bool:
    """A path from the repository's root, or else one under ``src/freshdb`` (whole
    folders from the end: ``mysql/`` is ``dialects/mysql/``)."""
    if path.startswith(("src/", "tests/", "docs/")):
        return (ROOT / path).exists()
    parts = Path(path.rstrip("/")).parts
    return any(
        found.relative_to(PACKAGE).parts[-len(parts) :] == parts
        for found in PACKAGE.rglob(parts[-1])
        if "__pycache__" not in found.parts
    )


def test_the_page_names_modules() -> None:
    # The check below is only worth something while the page names what it should.
    paths = named_paths()
    assert "server/database_server.py" in paths
    assert "cleanup/retirement.py" in paths
    assert len(paths) > 40


@pytest.mark.parametrize("path", named_paths())
def test_every_module_path_named_exists(path: str) -> None:
    assert exists(path), f"docs/architecture.md names {path}, which is not in src/freshdb"


def glossary_entries() -> list[tuple[str, list[str]]]:
    """(name, the modules of its "where" column) for glossary words that are code names."""
    entries = []
    for words, where in GLOSSARY_ROW.findall(PAGE.read_text()):
        names = CODE_NAME.findall(words)
        modules = [m for m in PATH.findall(where) if m.endswith(".py")]
        entries.extend((name, modules) for name in names if modules)
    return entries


def test_the_glossary_names_code() -> None:
    names = [name for name, _ in glossary_entries()]
    assert {"DatabaseServer", "ClonePool", "EngineFactory", "ServerStatus"} <= set(names)


@pytest.mark.parametrize(("name", "modules"), glossary_entries())
def test_every_glossary_name_is_defined_where_it_says(name: str, modules: list[str]) -> None:
    definition = re.compile(rf"^(?:class|def) {name}\b|^{name}(?::[^=]+)? =", re.MULTILINE)
    sources = [
        found.read_text()
        for module in modules
        for found in PACKAGE.rglob(Path(module).name)
        if found.relative_to(PACKAGE).as_posix().endswith(module)
    ]
    assert any(definition.search(source) for source in sources), (
        f"docs/architecture.md says {name} is in {', '.join(modules)}, which do not define it"
    )
