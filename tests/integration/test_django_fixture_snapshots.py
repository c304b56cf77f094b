"""Django test classes' ``fixtures`` served from snapshots, in the runner and pytest-django.

The project of ``django_project`` gets two fixture files, a ``loaddata`` command of its
own that appends each call's labels to ``loaddata.log`` (what Django's test classes
call, counted where it runs), and three test classes with ``fixtures``: a
``TransactionTestCase`` (Django loads its fixtures before every test) and two
``TestCase`` classes (once per class). With snapshots on, ``loaddata`` runs once per
distinct fixture list (building its snapshot) and not at all in the next run.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from ..conftest import ENGINES
from . import django_project
from .test_django import RUNNER_SETTING, is_copy, passed, records, run
from .test_django import project_env as project_env  # the project's environment fixture

pytestmark = [pytest.mark.docker, pytest.mark.server]

AUTHORS = [
    {"model": "library.author", "pk": 100, "fields": {"name": "Ursula Le Guin"}},
    {"model": "library.author", "pk": 101, "fields": {"name": "Octavia Butler"}},
    {"model": "library.author", "pk": 102, "fields": {"name": "Iain Banks"}},
]
BOOKS = [{"model": "shelf.book", "pk": 200, "fields": {"title": "Kindred", "author": 101}}]

COUNTING_LOADDATA = """\
from pathlib import Path

from django.core.management.commands.loaddata import Command as LoadData


class Command(LoadData):
    def handle(self, *labels, **options):
        with open(Path(__file__).resolve().parents[3] / "loaddata.log", "a") as log:
            log.write(" ".join(labels) + "\\n")
        return super().handle(*labels, **options)
"""

FIXTURE_TESTS = """\
from django.db import connection
from django.test import TestCase, TransactionTestCase

from library.models import Author
from shelf.models import Book
from shelf.tests import record


def fixture_authors():
    return sorted(Author.objects.filter(pk__gte=100).values_list("name", flat=True))


class ChecksAndWrites:
    # Each test finds its class's fixtures and nothing an earlier test wrote, then writes.
    def check_and_write(self, name):
        self.check_fixtures()
        self.assertFalse(Author.objects.filter(name__startswith="written").exists())
        record(name, authors=fixture_authors())
        Author.objects.create(name=f"written by {name}")


class FixturesPerTest(ChecksAndWrites, TransactionTestCase):
    fixtures = ["authors", "books"]
    # As the project's other TransactionTestCase: the flush after each test (Django's
    # way) keeps the migrated rows restorable.
    serialized_rollback = True

    def check_fixtures(self):
        self.assertEqual(Book.objects.get(pk=200).author.name, "Octavia Butler")

    def test_a(self):
        self.check_and_write("ttc_a")

    def test_b(self):
        self.check_and_write("ttc_b")

    def test_c(self):
        self.check_and_write("ttc_c")


class FixturesPerClass(ChecksAndWrites, TestCase):
    fixtures = ["authors"]

    @classmethod
    def setUpTestData(cls):
        cls.extra = Author.objects.create(name="from setUpTestData")

    def check_fixtures(self):
        self.assertEqual(len(fixture_authors()), 4)  # three from the fixture, one extra

    def test_one(self):
        self.check_and_write("tc_one")

    def test_two(self):
        self.check_and_write("tc_two")


class SameFixturesAnotherClass(TestCase):
    fixtures = ["authors"]

    def test_no_leak_from_the_other_class(self):
        self.assertFalse(Author.objects.filter(name="from setUpTestData").exists())
        self.assertEqual(len(fixture_authors()), 3)
        record("tc_other", authors=fixture_authors())
"""


def add_fixture_classes(root: Path) -> None:
    """Fixture files, the counting ``loaddata`` and the classes that use them."""
    files = {
        "library/fixtures/authors.json": json.dumps(AUTHORS),
        "shelf/fixtures/books.json": json.dumps(BOOKS),
        "library/management/__init__.py": "",
        "library/management/commands/__init__.py": "",
        "library/management/commands/loaddata.py": COUNTING_LOADDATA,
        "shelf/test_fixture_classes.py": FIXTURE_TESTS,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def loaddata_calls(root: Path) -> list[str]:
    """The labels of every ``loaddata`` run so far (and forget them)."""
    log = root / "loaddata.log"
    if not log.exists():
        return []
    calls = log.read_text().splitlines()
    log.unlink()
    return calls


def fixture_records(env: dict[str, str]) -> dict[str, dict[str, object]]:
    return {name: r for name, r in records(env).items() if name.startswith(("ttc_", "tc_"))}


# Django's own way: once per TestCase class, before every TransactionTestCase test.
DJANGO_LOADS = ["authors", "authors", "authors books", "authors books", "authors books"]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_runner_loads_each_fixture_list_once_and_not_at_all_the_next_run(
    engine: str, tmp_path: Path, run_prefix: str, project_env: dict[str, str]
) -> None:
    root = django_project.write_project(
        tmp_path / "project", engine, token=secrets.token_hex(6), extra_settings=RUNNER_SETTING
    )
    add_fixture_classes(root)
    test = ("manage.py", "test", "-v", "2")

    # Off (the default): Django loads the fixtures itself, as many times as it always does.
    output = passed(run(root, project_env, *test))
    assert "Ran 12 tests" in output
    assert sorted(loaddata_calls(root)) == DJANGO_LOADS
    records(project_env)

    # On: each fixture list is loaded once, into its snapshot; every class or test
    # runs on a copy of its own.
    env = {**project_env, "FRESHDB_DJANGO_FIXTURE_SNAPSHOTS": "1"}
    output = passed(run(root, env, *test))
    assert "Ran 12 tests" in output
    assert sorted(loaddata_calls(root)) == ["authors", "authors books"]
    assert "fixtures of 3 test class(es) came from 2 snapshot(s) (2 built, 0 reused)" in output
    seen = fixture_records(env)
    assert len(seen) == 6
    databases = {name: str(r["database"]) for name, r in seen.items()}
    assert all(is_copy(run_prefix, name) for name in databases.values())
    # A copy per TransactionTestCase test, one per TestCase class.
    assert len({databases["ttc_a"], databases["ttc_b"], databases["ttc_c"]}) == 3
    assert databases["tc_one"] == databases["tc_two"] != databases["tc_other"]
    assert seen["ttc_a"]["authors"] == ["Iain Banks", "Octavia Butler", "Ursula Le Guin"]

    # The next run reuses both snapshots: no loaddata at all.
    output = passed(run(root, env, *test))
    assert "Ran 12 tests" in output
    assert loaddata_calls(root) == []
    assert "came from 2 snapshot(s) (0 built, 2 reused)" in output
    records(env)

    # An edited fixture file is a new snapshot (both lists contain it), and is seen;
    # with --parallel, the worker processes serve their classes from snapshots too
    # (Django's way would be five loads again).
    authors = root / "library/fixtures/authors.json"
    authors.write_text(authors.read_text().replace("Iain Banks", "Iain M. Banks"))
    output = passed(run(root, env, *test, "--parallel", "2"))
    assert "Ran 12 tests" in output
    assert sorted(loaddata_calls(root)) == ["authors", "authors books"]
    seen = fixture_records(env)
    assert seen["ttc_b"]["authors"] == ["Iain M. Banks", "Octavia Butler", "Ursula Le Guin"]
    assert "Iain M. Banks" in seen["tc_other"]["authors"]  # type: ignore[operator]
    databases = {name: str(r["database"]) for name, r in seen.items()}
    assert len({databases["ttc_a"], databases["ttc_b"], databases["ttc_c"]}) == 3
    assert all(is_copy(run_prefix, name) for name in databases.values())


def test_pytest_django_serves_fixtures_from_snapshots_also_under_xdist(
    tmp_path: Path, run_prefix: str, project_env: dict[str, str]
) -> None:
    root = django_project.write_project(
        tmp_path / "project", "postgres", token=secrets.token_hex(6)
    )
    add_fixture_classes(root)
    ini = root / "pytest.ini"
    ini.write_text(ini.read_text() + "freshdb_django_fixture_snapshots = true\n")

    output = passed(run(root, project_env, "-m", "pytest", "-q"))
    assert "15 passed" in output
    assert sorted(loaddata_calls(root)) == ["authors", "authors books"]
    seen = fixture_records(project_env)
    ttc = {str(seen[name]["database"]) for name in ("ttc_a", "ttc_b", "ttc_c")}
    assert len(ttc) == 3 and all(is_copy(run_prefix, name) for name in ttc)
    # The session's copy was never flushed under the tests of the project's own suite.
    assert seen["ttc_a"]["authors"] == ["Iain Banks", "Octavia Butler", "Ursula Le Guin"]

    # Two xdist workers: the snapshots exist, nobody loads anything.
    output = passed(run(root, project_env, "-m", "pytest", "-q", "-n", "2"))
    assert "15 passed" in output
    assert loaddata_calls(root) == []
    records(project_env)

    # An edited fixture, and two workers that each run every test (--dist each), so
    # both need both new snapshots at once: each is built once, not per worker.
    authors = root / "library/fixtures/authors.json"
    authors.write_text(authors.read_text().replace("Iain Banks", "Iain M. Banks"))
    output = passed(run(root, project_env, "-m", "pytest", "-q", "-n", "2", "--dist", "each"))
    assert "30 passed" in output
    assert sorted(loaddata_calls(root)) == ["authors", "authors books"]
    seen = fixture_records(project_env)
    assert len(seen) == 6
    assert all("Iain M. Banks" in r["authors"] for r in seen.values())  # type: ignore[operator]


def test_fixture_snapshot_setting_must_be_a_boolean(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    root = django_project.write_project(
        tmp_path / "project",
        "postgres",
        token=secrets.token_hex(6),
        extra_settings=RUNNER_SETTING + 'FRESHDB_DJANGO_FIXTURE_SNAPSHOTS = "sometimes"\n',
    )
    result = run(root, project_env, "manage.py", "test")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "settings.FRESHDB_DJANGO_FIXTURE_SNAPSHOTS is 'sometimes'" in output
