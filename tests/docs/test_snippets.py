"""Every code snippet in the README and docs/ is exercised here.

Fenced blocks are found by language: ``python`` blocks without a file name run as
scripts; a ``python`` or ``toml`` block whose first line is ``# <file name>`` is a
file of a small project, and the project's pytest suite is run. Shell blocks are
checked for the commands they name (the CLI's are run by tests/integration/test_cli.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import freshdb

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_NAME = re.compile(r"^# ([\w./-]+\.(?:py|toml|sql|ini))\n")

pytestmark = pytest.mark.docker


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text())]


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def environment(prefix: str) -> dict[str, str]:
    return {**os.environ, "FRESHDB_PREFIX": prefix, "FRESHDB_MODE": "sticky"}


def run(args: list[str], cwd: Path, prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=environment(prefix), capture_output=True, text=True, timeout=300
    )


def scripts(path: Path) -> list[str]:
    return [code for lang, code in blocks(path) if lang == "python" and not FILE_NAME.match(code)]


def project_files(path: Path) -> dict[str, str]:
    files = {}
    for lang, code in blocks(path):
        match = FILE_NAME.match(code)
        if lang in ("python", "toml", "sql", "ini") and match:
            files[match.group(1)] = code
    return files


@pytest.mark.parametrize(
    ("document", "index"),
    [(doc, i) for doc in documents() for i in range(len(scripts(doc)))],
    ids=lambda value: value.name if isinstance(value, Path) else str(value),
)
def test_script_snippets_run(document: Path, index: int, run_prefix: str, tmp_path: Path) -> None:
    code = scripts(document)[index]
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
    [doc for doc in documents()[1:] if any(n.startswith("test_") for n in project_files(doc))],
    ids=lambda doc: doc.name,
)
def test_project_snippets_pass(document: Path, run_prefix: str, tmp_path: Path) -> None:
    for name, content in project_files(document).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path, run_prefix
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_yaml_snippets_use_real_settings() -> None:
    known = {f"FRESHDB_{name.upper()}" for name in freshdb.Settings.__dataclass_fields__}
    for document in documents():
        for lang, code in blocks(document):
            if lang != "yaml":
                continue
            assert "pytest" in code, document.name
            for variable in re.findall(r"FRESHDB_[A-Z_]+", code):
                assert variable in known, (document.name, variable)


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
    targets = re.findall(r"^make (\w+)", shell, re.MULTILINE)
    assert {"demo", "test"} <= set(targets)
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
