"""Configuration precedence: arguments > environment > pyproject.toml > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from freshdb.config import resolve_settings
from freshdb.errors import ConfigurationError


def write_pyproject(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(body)
    return path


def test_defaults_without_any_source() -> None:
    settings = resolve_settings({}, environ={}, pyproject=False)
    assert settings.engine == "postgres"
    assert settings.mode == "sticky"
    assert settings.pool_size == 3
    assert settings.image is None
    assert settings.prefix == "freshdb"


def test_precedence_arguments_over_environment_over_pyproject(tmp_path: Path) -> None:
    pyproject = write_pyproject(
        tmp_path, "[tool.freshdb]\npool_size = 7\nprefix = 'frompyproject'\ntmpfs-size = '1g'\n"
    )
    env = {"FRESHDB_POOL_SIZE": "5", "FRESHDB_PREFIX": "fromenv"}
    from_files = resolve_settings({}, environ={}, pyproject=pyproject)
    assert (from_files.pool_size, from_files.prefix, from_files.tmpfs_size) == (
        7,
        "frompyproject",
        "1g",
    )
    from_env = resolve_settings({}, environ=env, pyproject=pyproject)
    assert (from_env.pool_size, from_env.prefix, from_env.tmpfs_size) == (5, "fromenv", "1g")
    from_args = resolve_settings({"pool_size": 2}, environ=env, pyproject=pyproject)
    assert (from_args.pool_size, from_args.prefix) == (2, "fromenv")


def test_none_arguments_mean_not_given() -> None:
    settings = resolve_settings(
        {"pool_size": None}, environ={"FRESHDB_POOL_SIZE": "9"}, pyproject=False
    )
    assert settings.pool_size == 9


def test_engine_specific_image_beats_generic(tmp_path: Path) -> None:
    pyproject = write_pyproject(
        tmp_path, "[tool.freshdb]\nimage = 'generic:1'\npostgres_image = 'pg:file'\n"
    )
    assert resolve_settings({}, environ={}, pyproject=pyproject).image == "pg:file"
    env = {"FRESHDB_IMAGE": "generic:env"}
    assert resolve_settings({}, environ=env, pyproject=pyproject).image == "generic:env"
    env["FRESHDB_POSTGRES_IMAGE"] = "pg:env"
    assert resolve_settings({}, environ=env, pyproject=pyproject).image == "pg:env"
    assert (
        resolve_settings({"engine": "mariadb"}, environ=env, pyproject=pyproject).image
        == "generic:env"
    )
    assert resolve_settings({"image": "pg:arg"}, environ=env, pyproject=pyproject).image == "pg:arg"


def test_ci_makes_throwaway_the_default_mode() -> None:
    assert resolve_settings({}, environ={"CI": "true"}, pyproject=False).mode == "throwaway"
    assert resolve_settings({}, environ={"CI": "false"}, pyproject=False).mode == "sticky"
    explicit = resolve_settings({"mode": "sticky"}, environ={"CI": "true"}, pyproject=False)
    assert explicit.mode == "sticky"


def test_url_implies_external_mode_unless_a_mode_is_chosen() -> None:
    env = {"FRESHDB_URL": "postgresql://u:p@db:5432/postgres"}
    assert resolve_settings({}, environ=env, pyproject=False).mode == "external"
    sticky = resolve_settings({"mode": "sticky"}, environ=env, pyproject=False)
    assert sticky.mode == "sticky" and sticky.url is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"engine": "sqlite"}, "unknown engine 'sqlite'"),
        ({"mode": "forever"}, "unknown mode 'forever'"),
        ({"mode": "external"}, "needs the admin URL"),
        ({"url": "not a url"}, "malformed server URL"),
        ({"url": "redis://localhost"}, "is not served"),
        ({"prefix": "bad prefix"}, "not usable in database and container names"),
        ({"prefix": "x'; DROP"}, "not usable in database and container names"),
        ({"pool_size": -1}, "pool_size must be between"),
        ({"pool_size": "many"}, "must be a number"),
        ({"snapshot_pool_size": 65}, "snapshot_pool_size must be between 0 and 64"),
        ({"tmpfs_size": "lots"}, "is not a size"),
        ({"template_retention": "a while"}, "template_retention: 'a while' is not a duration"),
        ({"template_retention": "-3d"}, "is not a duration"),
        ({"nonsense": 1}, "unknown freshdb setting"),
        ({"direct_start": "sometimes"}, "direct_start from the arguments must be true or false"),
    ],
)
def test_bad_input_says_what_to_do(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_settings(arguments, environ={}, pyproject=False)


def test_malformed_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_settings({"url": "postgresql://user:s3cret@"}, environ={}, pyproject=False)
    assert "s3cret" not in str(info.value)


def test_pyproject_rejects_unknown_keys_and_urls(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown key"):
        resolve_settings(
            {}, environ={}, pyproject=write_pyproject(tmp_path, "[tool.freshdb]\npool = 1\n")
        )
    with pytest.raises(ConfigurationError, match="keep server URLs"):
        resolve_settings(
            {},
            environ={},
            pyproject=write_pyproject(tmp_path, "[tool.freshdb]\nurl = 'postgresql://x'\n"),
        )


def test_pyproject_is_found_upwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pyproject(tmp_path, "[tool.freshdb]\npool_size = 11\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert resolve_settings({}, environ={}).pool_size == 11


def test_template_retention_is_a_duration_from_any_source(tmp_path: Path) -> None:
    assert resolve_settings({}, environ={}, pyproject=False).template_retention_seconds == 604800
    pyproject = write_pyproject(tmp_path, "[tool.freshdb]\ntemplate-retention = '36h'\n")
    from_file = resolve_settings({}, environ={}, pyproject=pyproject)
    assert from_file.template_retention_seconds == 36 * 3600
    from_env = resolve_settings(
        {}, environ={"FRESHDB_TEMPLATE_RETENTION": "2w"}, pyproject=pyproject
    )
    assert from_env.template_retention_seconds == 14 * 86400
    given = resolve_settings({"template_retention": 90}, environ={}, pyproject=pyproject)
    assert given.template_retention_seconds == 90  # a bare number is seconds


def test_snapshot_pool_size_defaults_to_two_and_comes_from_the_environment() -> None:
    assert resolve_settings({}, environ={}, pyproject=False).snapshot_pool_size == 2
    from_env = resolve_settings({}, environ={"FRESHDB_SNAPSHOT_POOL_SIZE": "5"}, pyproject=False)
    assert from_env.snapshot_pool_size == 5


def test_direct_start_is_on_by_default_and_turned_off_from_any_source(tmp_path: Path) -> None:
    assert resolve_settings({}, environ={}, pyproject=False).direct_start is True
    for word in ("0", "false", "No", "off"):
        env = {"FRESHDB_DIRECT_START": word}
        assert resolve_settings({}, environ=env, pyproject=False).direct_start is False
    assert (
        resolve_settings({"direct_start": False}, environ={}, pyproject=False).direct_start is False
    )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.freshdb]\ndirect-start = false\n")
    assert resolve_settings({}, environ={}, pyproject=pyproject).direct_start is False
    # An argument beats the environment, as for every setting.
    on = resolve_settings(
        {"direct_start": True}, environ={"FRESHDB_DIRECT_START": "0"}, pyproject=False
    )
    assert on.direct_start is True
