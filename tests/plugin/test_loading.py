"""Loading the plugin costs nothing a run does not use: no SQLAlchemy, driver or Docker.

pytest loads freshdb's plugin in every run of every project where freshdb is
installed, including runs whose tests use no freshdb fixture. These inner runs look
at ``sys.modules`` when the session ends: only a fixture that is asked for may
import the server machinery. No Docker is needed: nothing here asks for a server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest_plugins = ["pytester"]

#: What a run that uses no database must not have imported.
HEAVY = ("sqlalchemy", "psycopg", "pymysql", "docker", "freshdb.server", "freshdb.database")

RECORDING_CONFTEST = f"""
import json
from typing import Any
import sys
from pathlib import Path

HEAVY = {HEAVY!r}


def pytest_sessionfinish(session):
    loaded = sorted(name for name in HEAVY if name in sys.modules)
    plugins = [name for name, _ in session.config.pluginmanager.list_name_plugin()]
    (Path(__file__).parent / "modules.json").write_text(
        json.dumps({{"loaded": loaded, "freshdb": "freshdb" in plugins}})
    )
"""


def loaded_after(pytester: pytest.Pytester, *args: str) -> dict[str, Any]:
    """Run pytest in a new process; what the recording conftest saw at the end."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)
    assert result.ret == 0, result.stdout.str()
    recorded: dict[str, Any] = json.loads((pytester.path / "modules.json").read_text())
    return recorded


@pytest.fixture
def plain_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(
        test_plain="""
        import pytest


        @pytest.mark.parametrize("n", range(3))
        def test_plain(n):
            assert n < 3
        """
    )
    return pytester


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--collect-only", "-q"], id="collect-only"),
        pytest.param(["-v"], id="run-with-header"),
        pytest.param(["--freshdb-mode=throwaway", "--freshdb-engine=mariadb"], id="options"),
    ],
)
def test_loading_the_plugin_imports_no_database_machinery(
    plain_project: pytest.Pytester, args: list[str]
) -> None:
    recorded = loaded_after(plain_project, *args)
    assert recorded == {"loaded": [], "freshdb": True}


def test_the_check_sees_a_heavy_import(plain_project: pytest.Pytester) -> None:
    # The same check, on a run that does import SQLAlchemy: it must notice.
    plain_project.makepyfile(
        test_imports="""
        def test_imports():
            import sqlalchemy  # noqa: F401
        """
    )
    recorded = loaded_after(plain_project)
    assert "sqlalchemy" in recorded["loaded"]
