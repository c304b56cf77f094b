"""A small Django project written into a directory, for the Django tests.

Two apps: ``library`` (``Author``) and ``shelf`` (``Book``, a ``ForeignKey`` to
``library.Author``), and a data migration in ``shelf`` that seeds one author and one
book and appends a line to ``migrations.log`` each time it runs, so tests can count
how often ``migrate`` really ran. Django loads one project per process: tests run
it in subprocesses.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

ENGINES = {
    "postgres": "django.db.backends.postgresql",
    "mariadb": "django.db.backends.mysql",
    "mysql": "django.db.backends.mysql",
}

SETTINGS = """\
SECRET_KEY = "not-a-secret"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "library",
    "shelf",
]
# The project's own database: tests never reach it (freshdb serves them).
DATABASES = {{
    "default": {{
        "ENGINE": "{engine}",
        "NAME": "app",
        "USER": "app",
        "PASSWORD": "app-password",
        "HOST": "app-db.invalid",
        "PORT": "{port}",
    }}
}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
{extra}
"""

LIBRARY_MODELS = """\
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)
"""

LIBRARY_0001 = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Author",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=100)),
            ],
        ),
    ]
"""

SHELF_MODELS = """\
from django.db import models


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey("library.Author", on_delete=models.CASCADE, related_name="books")
"""

SHELF_0001 = """\
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [("library", "0001_initial")]
    operations = [
        migrations.CreateModel(
            name="Book",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("title", models.CharField(max_length=200)),
                (
                    "author",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="books",
                        to="library.author",
                    ),
                ),
            ],
        ),
    ]
"""

SHELF_0002_SEED = """\
from pathlib import Path

from django.db import migrations

# token: {token}


def seed(apps, schema_editor):
    with open(Path(__file__).resolve().parents[2] / "migrations.log", "a") as log:
        log.write("shelf.0002_seed\\n")
    Author = apps.get_model("library", "Author")
    Book = apps.get_model("shelf", "Book")
    ada = Author.objects.using(schema_editor.connection.alias).create(name="Ada Lovelace")
    Book.objects.using(schema_editor.connection.alias).create(title="Notes", author=ada)


class Migration(migrations.Migration):
    dependencies = [("shelf", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
"""

SHELF_TESTS = """\
import json
import os

from django.db import connection
from django.test import TestCase, TransactionTestCase

from library.models import Author
from shelf.models import Book


def record(test, **facts):
    # Which database each test ran on, and in which process: one file per test.
    directory = os.environ.get("RECORD_DIR")
    if directory:
        facts.update(database=connection.settings_dict["NAME"], pid=os.getpid())
        with open(os.path.join(directory, test), "w") as out:
            json.dump(facts, out)


class SeededTests(TestCase):
    def test_seed_rows_from_the_data_migration(self):
        self.assertEqual(Book.objects.get().author.name, "Ada Lovelace")
        record("seeded")

    def test_foreign_key_across_apps(self):
        author = Author.objects.create(name="Grace Hopper")
        Book.objects.create(title="COBOL", author=author)
        self.assertEqual(author.books.count(), 1)
        record("foreign_key")

    def test_writes_are_rolled_back(self):
        self.assertEqual(Author.objects.count(), 1)


LEAKED = []


class LeakyTests(TestCase):
    def test_may_leave_a_connection_open(self):
        # Code under test that never closes a connection (LEAK_CONNECTION=1): the
        # test database must still go away at the end of the run.
        if os.environ.get("LEAK_CONNECTION"):
            LEAKED.append(connection.get_new_connection(connection.get_connection_params()))


class CommittingTests(TransactionTestCase):
    # Django flushes after a TransactionTestCase; serialized_rollback brings the
    # seeded rows back before each test, as a project with data migrations does.
    serialized_rollback = True

    def test_commits_and_sees_its_own_rows(self):
        Author.objects.create(name="Barbara Liskov")
        self.assertEqual(Author.objects.count(), 2)
        record("committing")

    def test_starts_from_the_seeded_state(self):
        self.assertEqual(Author.objects.count(), 1)
"""

PYTEST_STYLE_TESTS = """\
import pytest

from library.models import Author
from shelf.tests import record


@pytest.mark.django_db
def test_1_seeded():
    assert Author.objects.count() == 1
    record("pytest_seeded")


# serialized_rollback: as CommittingTests, so the flush after each transactional
# test does not leave the seeded rows (and content types) in a state the next
# serialized test cannot restore.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_2_commits():
    record("pytest_commits", count=Author.objects.count())
    Author.objects.create(name="Edsger Dijkstra")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_3_commits_again():
    record("pytest_commits_again", count=Author.objects.count())
    Author.objects.create(name="Tony Hoare")
"""

PYTEST_INI = """\
[pytest]
DJANGO_SETTINGS_MODULE = proj.settings
python_files = tests.py test_*.py
addopts = -p no:cacheprovider
freshdb_django = true
freshdb_django_transaction_copies = {copies}
"""


def write_project(
    root: Path,
    engine: str,
    *,
    token: str,
    extra_settings: str = "",
    transaction_copies: bool = False,
) -> Path:
    """Write the project under ``root`` for ``engine`` ("postgres", "mariadb" or "mysql")."""
    port = "5432" if engine == "postgres" else "3306"
    files = {
        # What a project on Django's mysql backend without mysqlclient does.
        "proj/__init__.py": (
            "import pymysql\n\npymysql.install_as_MySQLdb()\n" if engine != "postgres" else ""
        ),
        "proj/settings.py": SETTINGS.format(
            engine=ENGINES[engine], port=port, extra=textwrap.dedent(extra_settings)
        ),
        "manage.py": (
            "import os, sys\n"
            "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')\n"
            "from django.core.management import execute_from_command_line\n"
            "execute_from_command_line(sys.argv)\n"
        ),
        "library/__init__.py": "",
        "library/models.py": LIBRARY_MODELS,
        "library/migrations/__init__.py": "",
        "library/migrations/0001_initial.py": LIBRARY_0001,
        "shelf/__init__.py": "",
        "shelf/models.py": SHELF_MODELS,
        "shelf/tests.py": SHELF_TESTS,
        "shelf/test_pytest_style.py": PYTEST_STYLE_TESTS,
        "pytest.ini": PYTEST_INI.format(copies=str(transaction_copies).lower()),
        "shelf/migrations/__init__.py": "",
        "shelf/migrations/0001_initial.py": SHELF_0001,
        "shelf/migrations/0002_seed.py": SHELF_0002_SEED.format(token=token),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def add_migration(root: Path, body: str = "") -> Path:
    """Add ``library.0002_author_born``: a nullable column (the usual schema change)."""
    path = root / "library/migrations/0002_author_born.py"
    path.write_text(
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("library", "0001_initial")]\n'
        "    operations = [\n"
        '        migrations.AddField("author", "born", models.IntegerField(null=True)),\n'
        f"{body}"
        "    ]\n"
    )
    models = root / "library/models.py"
    models.write_text(models.read_text() + "    born = models.IntegerField(null=True)\n")
    return path


def migrations_run(root: Path) -> int:
    """How many times the data migration ran (each template build runs it once)."""
    log = root / "migrations.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def add_history(root: Path, count: int) -> None:
    """Add ``count`` migrations to ``library`` after ``0001_initial``: a longer history
    (each adds a nullable column to ``Author``)."""
    previous = "0001_initial"
    fields = []
    for number in range(2, count + 2):
        name = f"{number:04d}_author_field_{number}"
        (root / "library/migrations" / f"{name}.py").write_text(
            "from django.db import migrations, models\n\n\n"
            "class Migration(migrations.Migration):\n"
            f'    dependencies = [("library", "{previous}")]\n'
            "    operations = [\n"
            f'        migrations.AddField("author", "field_{number}", '
            "models.IntegerField(null=True)),\n"
            "    ]\n"
        )
        fields.append(f"    field_{number} = models.IntegerField(null=True)\n")
        previous = name
    shelf = root / "shelf/migrations/0001_initial.py"
    # shelf's first migration follows the whole library history, as makemigrations would.
    shelf.write_text(
        shelf.read_text().replace('("library", "0001_initial")', f'("library", "{previous}")')
    )
    models = root / "library/models.py"
    models.write_text(models.read_text() + "".join(fields))


SERVER_SHARED_TESTS = """\
import os

import pytest
from django.db import connection

from freshdb.backends.docker import connect_docker
from freshdb.naming import LABEL_PREFIX_NAME
from shelf.tests import record


@pytest.mark.django_db
@pytest.mark.parametrize("number", range(6))
def test_which_server(number):
    client, _ = connect_docker()
    label = f"{LABEL_PREFIX_NAME}={os.environ['FRESHDB_PREFIX']}"
    containers = client.containers.list(all=True, filters={"label": [label]})
    record(
        f"server_{number}",
        port=connection.settings_dict["PORT"],
        containers=sorted(c.name for c in containers),
    )
"""


def add_server_shared_tests(root: Path) -> None:
    """Add six tests that record their server's port and the prefix's containers."""
    (root / "shelf/test_server_shared.py").write_text(SERVER_SHARED_TESTS)
