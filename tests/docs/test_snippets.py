"""Every code snippet in the README and docs/ is exercised here.

Fenced blocks are found by language:

- a ``python``, ``toml``, ``ini`` or ``sql`` block whose first line is a comment
  naming a file (``# <path>``, or ``-- <path>`` in SQL) is a file of the document's
  small project; a block holding only that line is an empty file;
- ``python`` blocks without a file name run as scripts, in a directory holding the
  document's project files (so a script can use the project's ``alembic.ini``);
- in a document with project files, the ``pytest ...`` and ``python ...`` lines of
  ``sh`` blocks are run in order in the project's directory, and must succeed; a
  project with test files and no such lines is run with ``pytest``;
- other shell blocks are checked for the commands they name (the CLI's are run by
  tests/integration/test_cli.py), yaml blocks for real ``FRESHDB_*`` names.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import freshdb

from ..conftest import project_environment

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_NAME = re.compile(r"^(?:#|--) ([\w./-]+\.(?:py|toml|sql|ini))\n")
PROJECT_LANGUAGES = ("python", "toml", "sql", "ini")
# An sh line the project runs: optional VAR=value assignments, then pytest or python.
PROJECT_COMMAND = re.compile(r"^(?:\w+=\S+\s+)*(?:pytest|python)\b")

pytestmark = pytest.mark.docker


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text())]


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def run(
    args: list[str], cwd: Path, prefix: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env={**project_environment(prefix), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def scripts(path: Path) -> list[str]:
    return [code for lang, code in blocks(path) if lang == "python" and not FILE_NAME.match(code)]


def project_files(path: Path) -> dict[str, str]:
    files = {}
    for lang, code in blocks(path):
        match = FILE_NAME.match(code)
        if lang in PROJECT_LANGUAGES and match:
            files[match.group(1)] = code
    return files


def write_project(path: Path, directory: Path) -> None:
    for name, content in project_files(path).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(content)


def project_commands(path: Path) -> list[str]:
    """The ``pytest``/``python`` lines of a document's sh blocks (with project files only)."""
    if not project_files(path):
        return []
    return [
        line.strip()
        for lang, code in blocks(path)
        if lang == "sh"
        for line in code.splitlines()
        if PROJECT_COMMAND.match(line.strip())
    ]


def command_arguments(line: str) -> tuple[list[str], dict[str, str]]:
    """``VAR=1 pytest -q  # why`` -> (this interpreter's pytest, its arguments), {VAR: 1}."""
    words = shlex.split(line, comments=True)
    extra_env = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        extra_env[name] = value
    program, *arguments = words
    interpreter = [sys.executable] if program == "python" else [sys.executable, "-m", "pytest"]
    return [*interpreter, *arguments], extra_env


def has_tests(path: Path) -> bool:
    return any(
        Path(name).name.startswith("test_") or Path(name).name == "tests.py"
        for name in project_files(path)
    )


@pytest.mark.parametrize(
    ("document", "index"),
    [(doc, i) for doc in documents() for i in range(len(scripts(doc)))],
    ids=lambda value: value.name if isinstance(value, Path) else str(value),
)
def test_script_snippets_run(document: Path, index: int, run_prefix: str, tmp_path: Path) -> None:
    code = scripts(document)[index]
    write_project(document, tmp_path)
    (tmp_path / "snippet.py").write_text(code)
    result = run([sys.executable, "snippet.py"], tmp_path, run_prefix)
    assert result.returncode == 0, f"{document.name} snippet {index}:\n{code}\n{result.stderr}"


# What the README's quick start leaves to the reader's project: its models.
QUICK_START_MODELS = """
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
"""


def test_readme_quick_start_project_passes(run_prefix: str, tmp_path: Path) -> None:
    files = project_files(ROOT / "README.md")
    assert {"pyproject.toml", "test_users.py"} <= set(files)
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "models.py").write_text(QUICK_START_MODELS)
    with (tmp_path / "pyproject.toml").open("a") as handle:
        handle.write('pythonpath = ["."]\n')
    # Twice the same test: the second sees an empty table again.
    test = (tmp_path / "test_users.py").read_text()
    (tmp_path / "test_users_again.py").write_text(test)
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path, run_prefix
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.parametrize(
    "document",
    [doc for doc in documents()[1:] if has_tests(doc) or project_commands(doc)],
    ids=lambda doc: doc.name,
)
def test_project_snippets_pass(document: Path, run_prefix: str, tmp_path: Path) -> None:
    write_project(document, tmp_path)
    for line in project_commands(document) or ["pytest -q"]:
        args, extra_env = command_arguments(line)
        if args[1:3] == ["-m", "pytest"]:
            args += ["-p", "no:cacheprovider"]
        result = run(args, tmp_path, run_prefix, extra_env)
        assert result.returncode == 0, f"{document.name}: {line}\n{result.stdout}{result.stderr}"
        if args[1:3] == ["-m", "pytest"]:
            assert " passed" in result.stdout, f"{document.name}: {line}\n{result.stdout}"


def test_yaml_snippets_use_real_settings() -> None:
    known = {f"FRESHDB_{name.upper()}" for name in freshdb.Settings.__dataclass_fields__}
    for document in documents():
        for lang, code in blocks(document):
            if lang != "yaml":
                continue
            assert "pytest" in code, document.name
            for variable in re.findall(r"FRESHDB_[A-Z_]+", code):
                assert variable in known, (document.name, variable)


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_point_to_files_that_exist() -> None:
    for document in documents():
        for target in LINK.findall(document.read_text()):
            if "://" not in target:
                assert (document.parent / target).exists(), (document.name, target)


def test_the_readme_links_every_guide() -> None:
    linked = set(LINK.findall((ROOT / "README.md").read_text()))
    for guide in documents()[1:]:
        assert f"docs/{guide.name}" in linked, guide.name


def test_readme_cli_block_names_real_commands() -> None:
    shell = "\n".join(code for lang, code in blocks(ROOT / "README.md") if lang == "sh")
    shown = set(re.findall(r"^freshdb (\w+)", shell, re.MULTILINE))
    result = subprocess.run(
        [sys.executable, "-m", "freshdb", "--help"], capture_output=True, text=True, timeout=60
    )
    assert shown and all(command in result.stdout for command in shown), shown


def test_readme_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    shell = "\n".join(code for lang, code in blocks(ROOT / "README.md") if lang == "sh")
    targets = re.findall(r"^make ([\w-]+)", shell, re.MULTILINE)
    assert {"demo", "test"} <= set(targets)
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
