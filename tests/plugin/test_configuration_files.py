"""Every place pytest reads options from reaches freshdb.

``freshdb_*`` options are ordinary pytest ini options: a project keeps them in
whichever file holds its pytest configuration. Each inner run below configures
freshdb in one of those places only, and the header freshdb prints (before anything
starts) shows what freshdb understood. No Docker is needed: no test asks for a server.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable

import pytest

pytest_plugins = ["pytester"]

#: The settings each form gives, as an INI file writes them.
INI_LINES = """
freshdb_mode = throwaway
freshdb_image = formimage:1
freshdb_prefix = {prefix}
freshdb_pool_size = 6
"""
#: The same in TOML; an INI-mode table turns the number into "6", a TOML-mode one keeps it.
TOML_LINES = """
freshdb_mode = "throwaway"
freshdb_image = "formimage:1"
freshdb_prefix = "{prefix}"
freshdb_pool_size = 6
"""
NEEDS_PYTEST_9 = pytest.mark.skipif(
    pytest.version_tuple < (9, 0), reason="pytest reads [tool.pytest] and pytest.toml from 9.0"
)


def _file(filename: str, section: str, lines: str) -> Callable[[pytest.Pytester, str], list[str]]:
    """A form that writes the settings (``lines``) under ``[section]`` of ``filename``."""

    def write(project: pytest.Pytester, prefix: str) -> list[str]:
        text = f"[{section}]\n" + lines.format(prefix=prefix)
        (project.path / filename).write_text(text)
        return []

    return write


def _override(project: pytest.Pytester, prefix: str) -> list[str]:
    lines = INI_LINES.format(prefix=prefix).strip().splitlines()
    return [argument for line in lines for argument in ("-o", line.replace(" = ", "="))]


FORMS = {
    "pytest.ini": _file("pytest.ini", "pytest", INI_LINES),
    "tox.ini": _file("tox.ini", "pytest", INI_LINES),
    "setup.cfg": _file("setup.cfg", "tool:pytest", INI_LINES),
    "pyproject.toml ini_options": _file("pyproject.toml", "tool.pytest.ini_options", TOML_LINES),
    "pyproject.toml tool.pytest": _file("pyproject.toml", "tool.pytest", TOML_LINES),
    "pytest.toml": _file("pytest.toml", "pytest", TOML_LINES),
    "-o": _override,
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FRESHDB_* variable (nor CI) decides anything in the inner runs."""
    for variable in list(os.environ):
        if variable.startswith("FRESHDB_") or variable == "CI":
            monkeypatch.delenv(variable)


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    "form",
    [
        pytest.param(name, marks=[NEEDS_PYTEST_9] if name.endswith(("tool.pytest", "toml")) else [])
        for name in FORMS
    ],
)
def test_each_place_pytest_reads_options_from_configures_freshdb(
    pytester: pytest.Pytester, form: str
) -> None:
    prefix = "form" + "".join(c for c in form if c.isalnum())[:12].lower()
    arguments = FORMS[form](pytester, prefix)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(*arguments, "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"freshdb: postgres, throwaway container, image formimage:1, prefix {prefix}, "
            "pool 6 per worker (started on first use)"
        ]
    )


@pytest.mark.usefixtures("clean_environment")
def test_the_command_line_wins_over_every_configuration_file(pytester: pytest.Pytester) -> None:
    _file("tox.ini", "pytest", INI_LINES)(pytester, "fromfile")
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--freshdb-prefix=fromcli", "-o", "freshdb_pool_size=2", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["freshdb: * prefix fromcli, pool 2 per worker *"])


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    ("filename", "section"),
    [("pytest.ini", "pytest"), ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")],
)
def test_the_django_integration_is_turned_on_from_an_ini_file(
    pytester: pytest.Pytester, filename: str, section: str
) -> None:
    pytest.importorskip("pytest_django")
    (pytester.path / filename).write_text(
        textwrap.dedent(
            f"""
            [{section}]
            freshdb_django = true
            freshdb_django_transaction_copies = true
            """
        )
    )
    pytester.makepyfile(
        test_integration="""
        def test_integration_is_registered(request):
            manager = request.config.pluginmanager
            assert manager.has_plugin("freshdb-django")
            assert request.config.getini("freshdb_django_transaction_copies") is True
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)
