"""The plugin's pure logic: configuration precedence, server picking, reporting text."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import MetaData

from freshdb.config import resolve_settings
from freshdb.pytest_plugin.options import (
    explicit_arguments,
    merge_overrides,
    resolve_schema,
    server_request,
)
from freshdb.pytest_plugin.reporting import connect_hint, header_line, summary_lines

from .conftest import worker_report


def test_the_cli_option_beats_the_ini_value() -> None:
    cli = {"engine": None, "image": "cli-image", "pool_size": None, "prefix": ""}
    ini = {"engine": "", "image": "ini-image", "pool_size": "6", "prefix": "fromini"}
    assert explicit_arguments(cli, ini) == {
        "image": "cli-image",
        "pool_size": "6",
        "prefix": "fromini",  # an empty CLI value is "not given"
    }


def test_cli_over_ini_over_environment_over_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[tool.freshdb]\nimage = 'pyproject-image'\npool_size = 4\nprefix = 'frompyproject'\n"
        "mode = 'throwaway'\n"
    )
    environ = {"FRESHDB_IMAGE": "env-image", "FRESHDB_POOL_SIZE": "5", "FRESHDB_PREFIX": "fromenv"}
    cli = {"image": "cli-image"}
    ini = {"image": "ini-image", "pool_size": "6"}

    settings = resolve_settings(explicit_arguments(cli, ini), environ=environ, pyproject=pyproject)
    assert (settings.image, settings.pool_size, settings.prefix, settings.mode) == (
        "cli-image",
        6,
        "fromenv",
        "throwaway",
    )
    without_cli = resolve_settings(
        explicit_arguments({}, ini), environ=environ, pyproject=pyproject
    )
    assert without_cli.image == "ini-image"
    without_ini = resolve_settings(explicit_arguments({}, {}), environ=environ, pyproject=pyproject)
    assert (without_ini.image, without_ini.pool_size) == ("env-image", 5)
    only_file = resolve_settings(explicit_arguments({}, {}), environ={}, pyproject=pyproject)
    assert (only_file.image, only_file.pool_size, only_file.prefix) == (
        "pyproject-image",
        4,
        "frompyproject",
    )


def test_a_server_of_another_engine_does_not_inherit_image_or_url() -> None:
    base = {"image": "postgres-image", "url": "postgresql://u:p@h/db", "mode": "external"}
    assert merge_overrides(base, "postgres", {"engine": "mariadb"}) == {"engine": "mariadb"}
    assert merge_overrides(base, "postgres", {"engine": "postgresql", "pool_size": 1}) == {
        **base,
        "engine": "postgresql",
        "pool_size": 1,
    }
    assert merge_overrides({"image": "a"}, "postgres", {"engine": "mysql", "image": "b"}) == {
        "engine": "mysql",
        "image": "b",
    }


def test_a_fixed_port_and_a_driver_reach_the_settings_and_stay_with_their_engine(
    tmp_path: Path,
) -> None:
    ini = {"port": "54329", "driver": "psycopg2"}
    request = server_request(explicit_arguments({}, ini), {}, tmp_path, environ={})
    assert (request.settings.port, request.settings.driver) == (54329, "psycopg2")
    # A marker that switches engine must not ask a MariaDB server for the Postgres port.
    base = {"port": 54329, "driver": "psycopg2", "pool_size": 2}
    assert merge_overrides(base, "postgres", {"engine": "mariadb"}) == {
        "engine": "mariadb",
        "pool_size": 2,
    }


def test_marker_settings_give_another_server_key(tmp_path: Path) -> None:
    base = {"image": "some-image", "prefix": "unit"}
    default = server_request(base, {}, tmp_path, environ={})
    same = server_request(base, {"pool_size": default.settings.pool_size}, tmp_path, environ={})
    other = server_request(base, {"schema": "other.sql"}, tmp_path, environ={})
    assert default.key == same.key
    assert other.key != default.key
    metadata = MetaData()
    with_object = server_request(base, {"schema": metadata}, tmp_path, environ={})
    assert with_object.schema is metadata
    with_list = server_request(base, {"schema": [metadata]}, tmp_path, environ={})
    hash(with_list.key)  # unhashable schemas are keyed by identity


def test_schema_paths_are_relative_to_rootdir(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    assert resolve_schema("migrations", tmp_path) == str(tmp_path / "migrations")
    assert resolve_schema("myapp.models:Base.metadata", tmp_path) == "myapp.models:Base.metadata"
    assert resolve_schema(None, tmp_path) is None


def test_header_shows_configuration_without_secrets() -> None:
    external = resolve_settings(
        {"url": "postgresql://admin:s3cret@db.example:5432/postgres"}, environ={}, pyproject=False
    )
    line = header_line(external)
    assert "s3cret" not in line
    assert "external server postgresql://admin:***@db.example:5432/postgres" in line
    sticky = resolve_settings({"image": "img:1"}, environ={}, pyproject=False)
    assert header_line(sticky).startswith("freshdb: postgres, sticky container, image img:1")


def test_connect_hint_spells_out_what_only_pytest_options_changed() -> None:
    settings = resolve_settings({"prefix": "mine", "image": "img:1"}, environ={}, pyproject=False)
    cli_defaults = resolve_settings({"image": "img:1"}, environ={}, pyproject=False)
    assert connect_hint("db", settings, cli_defaults).startswith(
        "freshdb url --database db --prefix mine   ("
    )
    throwaway = settings.replace(mode="throwaway")
    assert "removed when the session ends" in connect_hint("db", throwaway, cli_defaults)


@pytest.mark.parametrize("verbose", [False, True])
def test_summary_names_each_server_once_and_who_built_the_template(verbose: bool) -> None:
    def report(worker: str, template_reused: bool) -> dict[str, object]:
        return worker_report(
            worker,
            template_reused=template_reused,
            template_build_seconds=0.5 if not template_reused else 0.0,
            pool={
                "size": 3,
                "acquired": 4,
                "waits": 0,
                "wait_seconds": 0.0,
                "clones": 7,
                "drops": 4,
                "kept": 0,
            },
        )

    lines = summary_lines(
        [report("gw0", True), report("gw1", False), report("gw2", True)], [], verbose
    )
    assert lines[:3] == [
        "postgres sticky server p-postgres-1 (reused), image img:1",
        "  url:      postgresql+psycopg://postgres:***@127.0.0.1:5432/postgres",
        "  template: p_t_0123 (built in 0.50 s by gw1, reused by 2 other worker(s))",
    ]
    assert len(lines) == (6 if verbose else 3)
