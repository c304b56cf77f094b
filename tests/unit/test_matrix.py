"""The test matrix's pure parts: which engine an image runs, what a run's environment
is, and how a JUnit report is counted (tests/matrix.py, benchmarks/servers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.servers import OFFICIAL_MATRIX, engine_of, matrix_images
from tests.matrix import ServerRun, count, environment, summary


@pytest.mark.parametrize(
    ("image", "engine"),
    [
        ("postgres:18", "postgres"),
        ("freshdb-local/postgres:15", "postgres"),
        ("registry.example:5000/library/mariadb:11.8", "mariadb"),
        ("mysql:9", "mysql"),
        ("mysql@sha256:0123", "mysql"),
    ],
)
def test_the_engine_is_the_image_name(image: str, engine: str) -> None:
    assert engine_of(image) == engine


def test_an_image_of_no_known_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="name a postgres, mariadb or mysql image"):
        engine_of("pgvector/pgvector:pg17")


def test_the_matrix_comes_from_the_environment_else_the_official_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FRESHDB_MATRIX_IMAGES", raising=False)
    assert matrix_images() == list(OFFICIAL_MATRIX)
    monkeypatch.setenv("FRESHDB_MATRIX_IMAGES", " freshdb-local/postgres:15  mysql:9 ")
    assert matrix_images() == ["freshdb-local/postgres:15", "mysql:9"]


def test_a_run_makes_its_image_the_one_its_engine_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHDB_POSTGRES_IMAGE", "freshdb-local/postgres:17")
    monkeypatch.delenv("FRESHDB_TEST_MYSQL_FAMILY", raising=False)
    mysql = environment("freshdb-local/mysql:9")
    assert mysql["FRESHDB_MYSQL_IMAGE"] == "freshdb-local/mysql:9"
    assert mysql["FRESHDB_TEST_MYSQL_FAMILY"] == "mysql"
    assert mysql["FRESHDB_POSTGRES_IMAGE"] == "freshdb-local/postgres:17"
    postgres = environment("postgres:15")
    assert postgres["FRESHDB_POSTGRES_IMAGE"] == "postgres:15"
    assert "FRESHDB_TEST_MYSQL_FAMILY" not in postgres


def test_a_junit_report_is_counted(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites>'
        '<testsuite name="pytest" errors="1" failures="2" skipped="3" tests="10"></testsuite>'
        "</testsuites>"
    )
    assert count(report) == (4, 3, 3)
    assert count(tmp_path / "missing.xml") == (0, 0, 0)


def test_the_summary_flags_a_failed_server() -> None:
    runs = [
        ServerRun("freshdb-local/postgres:18", passed=5, seconds=60.0, copy_ms=15.04),
        ServerRun("mysql:9", exit_code=1, passed=4, failed=1, seconds=30.0, copy_ms=None),
    ]
    lines = summary(runs, "server", copies=9).splitlines()
    assert lines[0] == "freshdb test matrix, tests marked 'server', per server:"
    assert lines[2].split() == ["freshdb-local/postgres:18", "5", "0", "0", "1.0", "15.0", "ms"]
    assert lines[3].split()[:6] == ["mysql:9", "4", "1", "0", "0.5", "failed"]
    assert "FAILED (pytest exit 1)" in lines[3]
    assert not runs[1].ok and runs[0].ok
