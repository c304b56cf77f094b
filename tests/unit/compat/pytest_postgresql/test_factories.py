"""freshdb.compat.pytest_postgresql.factories: the arguments the factories refuse.

The fixtures themselves run against real servers in tests/compat/.
"""

from __future__ import annotations

import pytest

from freshdb.compat.pytest_postgresql import factories
from freshdb.errors import ConfigurationError


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"executable": "/usr/lib/postgresql/15/bin/pg_ctl"}, "no pg_ctl to find"),
        ({"startparams": "-w"}, "no pg_ctl to start"),
        ({"unixsocketdir": "/var/run"}, "not a unix socket"),
        ({"postgres_options": "-N 50"}, "its own settings"),
        ({"port": 8432}, "remove port="),
        ({"host": "localhost"}, "remove host="),
        ({"user": "me"}, "remove user="),
        ({"password": "secret"}, "remove password="),
        ({"dbname": "tests"}, "remove dbname="),
    ],
)
def test_proc_arguments_freshdb_cannot_honour_are_refused(
    arguments: dict[str, object], said: str
) -> None:
    with pytest.raises(ConfigurationError, match=said):
        factories.postgresql_proc(**arguments)  # type: ignore[arg-type]


def test_proc_accepts_the_arguments_that_mean_the_default() -> None:
    assert callable(factories.postgresql_proc(port=None, host=None, load_autocommit=False))
    assert callable(factories.postgresql_proc(port=-1, options="-c statement_timeout=1000"))


def test_proc_takes_freshdb_settings_and_refuses_other_names() -> None:
    assert callable(factories.postgresql_proc(image="postgres:16", pool_size=2))
    with pytest.raises(ConfigurationError, match=r"unknown argument\(s\) colour .*pool_size"):
        factories.postgresql_proc(colour="blue")
    with pytest.raises(ConfigurationError, match="decides engine itself"):
        factories.postgresql_proc(engine="mysql")


def test_noproc_needs_a_host_or_port_for_login_details() -> None:
    with pytest.raises(ConfigurationError, match="give its host= or port= too"):
        factories.postgresql_noproc(user="me", password="secret")
    with pytest.raises(ConfigurationError, match="give the server one way"):
        factories.postgresql_noproc(host="db", url="postgresql://postgres@db/postgres")
    with pytest.raises(ConfigurationError, match="remove dbname="):
        factories.postgresql_noproc(host="db", dbname="tests")
    assert callable(factories.postgresql_noproc(host="db", port=5433, user="me"))


def test_a_client_fixture_with_its_own_dbname_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"postgresql\.info\.dbname"):
        factories.postgresql("postgresql_proc", dbname="test")


def test_an_async_client_fixture_with_its_own_dbname_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"postgresql_async\.info\.dbname"):
        factories.postgresql_async("postgresql_proc", dbname="test")
