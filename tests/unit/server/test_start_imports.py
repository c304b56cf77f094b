"""What a start imports when: the heavy modules only once the server is asked for."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from freshdb.backends.base import RunningServer, ServerBackend
from freshdb.server.preparation import START_MODULES, import_meanwhile

#: What a cold start imports while its server initialises, not before asking for it.
HEAVY = ("sqlalchemy", "psycopg", "freshdb.migrators.sql_splitter")


def _modules_after(code: str) -> dict[str, bool]:
    script = (
        f"import json, sys\n{code}\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: dict[str, bool] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def test_making_a_server_imports_no_sqlalchemy_driver_or_splitter() -> None:
    loaded = _modules_after(
        "from freshdb.server import DatabaseServer\n"
        "DatabaseServer('postgres', mode='throwaway', schema='schema.sql')"
    )
    assert loaded == dict.fromkeys(HEAVY, False)


def test_importing_meanwhile_loads_what_the_start_needs_after_the_server_answers() -> None:
    loaded = _modules_after(
        "from freshdb.server.preparation import START_MODULES, import_meanwhile\n"
        "import_meanwhile('postgresql+psycopg', START_MODULES).join(60)"
    )
    assert loaded == dict.fromkeys(HEAVY, True)


def test_a_failing_import_ahead_is_only_logged() -> None:
    thread = import_meanwhile("nosuchdialect+nodriver", START_MODULES)
    thread.join(60)
    assert not thread.is_alive()


class _Backend(ServerBackend):
    def __init__(self, calls_meanwhile: bool) -> None:
        self.calls_meanwhile = calls_meanwhile

    def start(self) -> RunningServer:
        if self.calls_meanwhile:
            self.begin_meanwhile()
        raise NotImplementedError

    def stop(self) -> None:
        pass


@pytest.mark.parametrize("calls_meanwhile", [True, False], ids=["backend", "session"])
def test_meanwhile_runs_once_whoever_begins_it(calls_meanwhile: bool) -> None:
    runs: list[int] = []
    backend = _Backend(calls_meanwhile)
    backend.meanwhile = functools.partial(runs.append, 1)
    with pytest.raises(NotImplementedError):
        backend.start()
    assert runs == ([1] if calls_meanwhile else [])
    backend.begin_meanwhile()  # as the session does after start()
    backend.begin_meanwhile()
    assert runs == [1]
    assert backend.meanwhile is None
