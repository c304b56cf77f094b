"""The migration guides in docs/migrate-from/: every after-suite passes on freshdb.

A guide's project is its fenced blocks whose first line is a comment naming a file
(``# path`` in Python, TOML and ini, ``-- path`` in SQL):

- ``before/NAME``: the suite as it is on the other tool;
- ``after/NAME``, ``after-VARIANT/NAME``: the same suite on freshdb (a guide may
  show several ways, e.g. a compatibility import and freshdb's own fixtures);
- any other path belongs to both (the tests, the schema, the models): what the
  guide does not change.

Each after-variant is written to a directory of its own with the shared files and
run in a subprocess, against this test run's prefix, by the command the guide
tells its reader to run; every test of the suite must pass. The other tools are
not installed here, so the before-suites are only compiled; that the tests
themselves are shared files is what makes "the same suite" true.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import project_environment

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ROOT / "docs" / "migrate-from"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_NAME = re.compile(r"^(?:#|--) ([\w./-]+\.(?:py|toml|sql|ini|cfg))\n")
VARIANT = re.compile(r"^(before|after(?:-[\w-]+)?)/(.+)$")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")

pytestmark = pytest.mark.docker


@dataclasses.dataclass(frozen=True)
class Expected:
    """How a guide's after-suites are run, and what a complete pass looks like."""

    command: str
    passed: str  # the line in the output that says every test ran and passed


#: Every guide, the command its reader runs, and the tests its suite has.
EXPECTED = {
    "pytest-postgresql.md": Expected("pytest -q", "6 passed"),
    "testcontainers.md": Expected("pytest -q", "5 passed"),
    "elefast.md": Expected("pytest -q", "5 passed"),
    "pytest-databases.md": Expected("pytest -q", "5 passed"),
    "django.md": Expected("python manage.py test", "Ran 4 tests"),
}


@dataclasses.dataclass
class Project:
    """A guide's files: shared ones, and each variant's own."""

    shared: dict[str, str] = dataclasses.field(default_factory=dict)
    variants: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def files(self, variant: str) -> dict[str, str]:
        return {**self.shared, **self.variants[variant]}

    @property
    def afters(self) -> list[str]:
        return sorted(v for v in self.variants if v.startswith("after"))


def guides() -> list[Path]:
    """The guides (README.md is their index)."""
    return sorted(path for path in GUIDES.glob("*.md") if path.name != "README.md")


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text())]


def project_of(path: Path) -> Project:
    project = Project()
    for _, code in blocks(path):
        match = FILE_NAME.match(code)
        if not match:
            continue
        name = match.group(1)
        variant = VARIANT.match(name)
        if variant:
            project.variants.setdefault(variant.group(1), {})[variant.group(2)] = code
        else:
            project.shared[name] = code
    return project


def write(files: dict[str, str], directory: Path) -> None:
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(content)


def arguments(command: str) -> list[str]:
    """``pytest -q`` / ``python manage.py test`` with this interpreter."""
    program, *rest = shlex.split(command)
    if program == "pytest":
        return [sys.executable, "-m", "pytest", *rest, "-p", "no:cacheprovider"]
    assert program == "python", command
    return [sys.executable, *rest]


def after_suites() -> list[tuple[Path, str]]:
    return [(guide, variant) for guide in guides() for variant in project_of(guide).afters]


def test_every_guide_has_a_before_and_an_after_and_an_expectation() -> None:
    names = {guide.name for guide in guides()}
    assert names == set(EXPECTED)
    for name in names:
        project = project_of(GUIDES / name)
        assert "before" in project.variants, name
        assert project.afters, name
        assert any(Path(f).name.startswith("test") for f in project.shared), name


@pytest.mark.parametrize(
    ("guide", "variant"),
    after_suites(),
    ids=[f"{guide.stem}-{variant}" for guide, variant in after_suites()],
)
def test_the_after_suite_passes_on_freshdb(
    guide: Path, variant: str, run_prefix: str, tmp_path: Path
) -> None:
    expected = EXPECTED[guide.name]
    write(project_of(guide).files(variant), tmp_path)
    result = subprocess.run(
        arguments(expected.command),
        cwd=tmp_path,
        env=project_environment(run_prefix),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{guide.name} {variant}: {expected.command}\n{output}"
    assert expected.passed in output, f"{guide.name} {variant}\n{output}"
    assert "skipped" not in output and "xfail" not in output, output


@pytest.mark.parametrize("guide", guides(), ids=lambda guide: guide.stem)
def test_the_guide_says_how_to_run_its_suite(guide: Path) -> None:
    shell = [code for lang, code in blocks(guide) if lang == "sh"]
    assert any(EXPECTED[guide.name].command in code for code in shell), guide.name


@pytest.mark.parametrize("guide", guides(), ids=lambda guide: guide.stem)
def test_every_python_file_of_the_guide_compiles(guide: Path) -> None:
    project = project_of(guide)
    for variant in [None, *project.variants]:
        files = project.shared if variant is None else project.variants[variant]
        for name, code in files.items():
            if name.endswith(".py"):
                compile(code, f"{guide.name}:{variant or ''}/{name}", "exec")


@pytest.mark.parametrize(
    ("guide", "name", "changes", "new_line"),
    [
        # One import changes.
        ("pytest-postgresql.md", "conftest.py", "-+", "freshdb.compat.pytest_postgresql"),
        # One setting is added.
        ("django.md", "proj/settings.py", "+", 'TEST_RUNNER = "freshdb.django.TestRunner"'),
    ],
)
def test_the_move_is_a_one_line_change(guide: str, name: str, changes: str, new_line: str) -> None:
    project = project_of(GUIDES / guide)
    # The first line of each is its file name.
    before = project.variants["before"][name].splitlines()[1:]
    after = project.variants["after"][name].splitlines()[1:]
    changed = [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert "".join(line[0] for line in changed) == changes, changed
    assert new_line in changed[-1], changed


def test_links_between_guides_point_to_files_that_exist() -> None:
    for document in [*guides(), GUIDES / "README.md", ROOT / "README.md"]:
        for target in LINK.findall(document.read_text()):
            if "://" not in target:
                assert (document.parent / target).exists(), (document.name, target)


def test_the_readme_links_the_guides() -> None:
    linked = set(LINK.findall((ROOT / "README.md").read_text()))
    assert "docs/migrate-from/README.md" in linked
    index = set(LINK.findall((GUIDES / "README.md").read_text()))
    for guide in guides():
        assert guide.name in index, guide.name
