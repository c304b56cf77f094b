"""A Django project generated for the Django benchmarks, with its tests and migrations.

One project serves every variant of a benchmark: ``DATABASES`` reads the server's
address from ``BENCH_DB_*`` environment variables, and pytest-django's own setup or
freshdb's (``-o freshdb_django=true``) is chosen on the command line.

- ``shop``: six models (foreign keys, a many-to-many) and their initial migration,
  plus ``tests`` small tests in the shapes a real suite has: mostly pytest
  functions on the ``db`` fixture, some ``TestCase`` classes, a few transactional
  tests (``django_db(transaction=True)``).
- ``history`` (``history > 0``): a linear migration history of that many
  migrations, the way a long-lived project grows one: a model created every fifth
  migration, fields added to it in between (some indexed), and a data migration
  every 25th. Its ``models.py`` is the history's end state, so ``makemigrations``
  has nothing to add.

Model and migration sources come from one description of each field, so the two
cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

SETTINGS = """\
import os

SECRET_KEY = "benchmark"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "shop",
{history_app}]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_DB_NAME", "bench_shop"),
        "USER": os.environ.get("BENCH_DB_USER", "postgres"),
        "PASSWORD": os.environ.get("BENCH_DB_PASSWORD", ""),
        "HOST": os.environ.get("BENCH_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_DB_PORT", "5432"),
        # pytest-django's own test database (kept with --reuse-db): a peer_ name,
        # which the benchmark's clean-up drops.
        "TEST": {{"NAME": os.environ.get("BENCH_DB_TEST_NAME")}},
    }}
}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Fast hashing, as test settings usually have.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
"""

PYTEST_INI = """\
[pytest]
DJANGO_SETTINGS_MODULE = proj.settings
python_files = test_*.py
addopts = -p no:cacheprovider
"""

#: The project's conftest: when ``BENCH_TIMES_FILE`` is set, the time from the start
#: of the second test to the end of the session, in that file. The first test's
#: setup holds the session's database setup; the rest is what each test costs.
CONFTEST = """\
import json
import os
import time

_STARTS = []


def pytest_runtest_logstart(nodeid, location):
    if len(_STARTS) < 2:
        _STARTS.append(time.perf_counter())


def pytest_sessionfinish(session):
    path = os.environ.get("BENCH_TIMES_FILE")
    if path and len(_STARTS) == 2:
        with open(path, "w") as stream:
            json.dump({"after_first_test": time.perf_counter() - _STARTS[1]}, stream)
"""

ID_FIELD = "models.BigAutoField(auto_created=True, primary_key=True, serialize=False)"


@dataclasses.dataclass(frozen=True)
class Model:
    """A model: its name and fields as ``(name, field expression)`` pairs."""

    name: str
    fields: tuple[tuple[str, str], ...]


SHOP_MODELS = (
    Model("Category", (("name", "models.CharField(max_length=100, unique=True)"),)),
    Model("Tag", (("label", "models.CharField(max_length=50)"),)),
    Model(
        "Product",
        (
            ("name", "models.CharField(max_length=200)"),
            ("price", "models.DecimalField(max_digits=10, decimal_places=2)"),
            (
                "category",
                'models.ForeignKey(on_delete=models.CASCADE, related_name="products", '
                'to="shop.category")',
            ),
            ("tags", 'models.ManyToManyField(blank=True, to="shop.tag")'),
        ),
    ),
    Model(
        "Customer",
        (
            ("email", "models.EmailField(max_length=254, unique=True)"),
            ("joined", "models.DateTimeField(auto_now_add=True)"),
        ),
    ),
    Model(
        "Order",
        (
            (
                "customer",
                'models.ForeignKey(on_delete=models.CASCADE, related_name="orders", '
                'to="shop.customer")',
            ),
            ("placed", "models.DateTimeField(auto_now_add=True)"),
            ("paid", "models.BooleanField(default=False)"),
        ),
    ),
    Model(
        "OrderLine",
        (
            (
                "order",
                'models.ForeignKey(on_delete=models.CASCADE, related_name="lines", '
                'to="shop.order")',
            ),
            ("product", 'models.ForeignKey(on_delete=models.PROTECT, to="shop.product")'),
            ("quantity", "models.PositiveIntegerField(default=1)"),
        ),
    ),
)

SHOP_HELPERS = """\
from decimal import Decimal

from shop.models import Category, Customer, Order, OrderLine, Product, Tag


def make_order(number, lines=2):
    category, _ = Category.objects.get_or_create(name=f"category-{number % 7}")
    customer = Customer.objects.create(email=f"customer-{number}@example.com")
    order = Order.objects.create(customer=customer)
    tag = Tag.objects.create(label=f"tag-{number}")
    for line in range(lines):
        product = Product.objects.create(
            name=f"product-{number}-{line}", price=Decimal("9.99"), category=category
        )
        product.tags.add(tag)
        OrderLine.objects.create(order=order, product=product, quantity=line + 1)
    return order
"""

FUNCTION_TEST = """

@pytest.mark.django_db
def test_order_{number}():
    order = make_order({number})
    assert order.lines.count() == 2
    assert Product.objects.filter(tags__label="tag-{number}").count() == 2
"""

TRANSACTION_TEST = """

@pytest.mark.django_db(transaction=True)
def test_committed_order_{number}():
    make_order({number}, lines=1)
    assert Order.objects.count() == 1
"""

TESTCASE_CLASS = """

class OrdersTestCase{number}(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.order = make_order({number})
{methods}"""

TESTCASE_METHOD = """
    def test_{method}(self):
        self.order.paid = True
        self.order.save()
        self.assertEqual(Order.objects.filter(paid=True).count(), 1)
        self.assertEqual(OrderLine.objects.filter(order__customer=self.order.customer).count(), 2)
"""

FILE_HEADER = """\
import pytest
from django.test import TestCase

from shop.helpers import make_order
from shop.models import Order, OrderLine, Product
"""

#: How a suite of ``tests`` tests divides: TestCase methods and transactional tests
#: as fractions, the rest pytest functions on the ``db`` fixture.
TESTCASE_SHARE = 0.15
TRANSACTION_SHARE = 0.05
METHODS_PER_CLASS = 5
TESTS_PER_FILE = 25


@dataclasses.dataclass(frozen=True)
class SuiteShape:
    """How many tests of each kind a generated suite has."""

    functions: int
    testcase_methods: int
    transactional: int

    @property
    def total(self) -> int:
        """Every test of the suite."""
        return self.functions + self.testcase_methods + self.transactional

    @classmethod
    def of(cls, tests: int) -> SuiteShape:
        """The shape of a suite of about ``tests`` tests."""
        classes = max(1, round(tests * TESTCASE_SHARE / METHODS_PER_CLASS))
        transactional = max(1, round(tests * TRANSACTION_SHARE))
        methods = classes * METHODS_PER_CLASS
        return cls(max(0, tests - methods - transactional), methods, transactional)


def model_source(model: Model) -> str:
    """The model's class for ``models.py``."""
    lines = [f"class {model.name}(models.Model):"]
    lines += [f"    {name} = {expression}" for name, expression in model.fields]
    return "\n".join(lines) + "\n"


def create_model_operation(model: Model) -> str:
    """The ``CreateModel`` operation of a migration for ``model``."""
    fields = [f'("id", {ID_FIELD})'] + [f'("{n}", {e})' for n, e in model.fields]
    body = "".join(f"                {field},\n" for field in fields)
    return (
        f"        migrations.CreateModel(\n"
        f'            name="{model.name}",\n'
        f"            fields=[\n{body}            ],\n"
        f"        ),\n"
    )


def migration_source(dependencies: list[tuple[str, str]], operations: str, code: str = "") -> str:
    """A migration module."""
    shown = ", ".join(f"({app!r}, {name!r})" for app, name in dependencies)
    return (
        "from django.db import migrations, models\n"
        f"{code}\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = [{shown}]\n"
        f"    operations = [\n{operations}    ]\n"
    )


def shop_files(tests: int) -> dict[str, str]:
    """The ``shop`` app: models, initial migration, helpers and the test files."""
    shape = SuiteShape.of(tests)
    models = "from django.db import models\n\n\n" + "\n\n".join(
        model_source(model) for model in SHOP_MODELS
    )
    operations = "".join(create_model_operation(model) for model in SHOP_MODELS)
    files = {
        "shop/__init__.py": "",
        "shop/models.py": models,
        "shop/helpers.py": SHOP_HELPERS,
        "shop/migrations/__init__.py": "",
        "shop/migrations/0001_initial.py": migration_source([], operations),
        "shop/tests/__init__.py": "",
    }
    blocks = [FUNCTION_TEST.format(number=n) for n in range(shape.functions)]
    blocks += [TRANSACTION_TEST.format(number=n) for n in range(shape.transactional)]
    for number in range(shape.testcase_methods // METHODS_PER_CLASS):
        methods = "".join(TESTCASE_METHOD.format(method=m) for m in range(METHODS_PER_CLASS))
        blocks.append(TESTCASE_CLASS.format(number=number, methods=methods))
    # Interleave the kinds over the files, as a real suite mixes them.
    blocks = blocks[::2] + blocks[1::2]
    per_file = max(1, TESTS_PER_FILE)
    for index in range(0, len(blocks), per_file):
        files[f"shop/tests/test_shop_{index // per_file:03d}.py"] = FILE_HEADER + "".join(
            blocks[index : index + per_file]
        )
    return files


#: Migrations of the Django apps the project installs (contenttypes 2, auth 12 in 5.x).
DJANGO_APP_MIGRATIONS = 14
#: Every how many migrations the history creates a model, and runs a data migration.
MODEL_EVERY = 5
DATA_EVERY = 25


def history_models(migrations: int) -> list[tuple[int, str, str, tuple[str, str] | None]]:
    """The history's migrations: ``(number, name, model, field)``; no field: a new model."""
    plan: list[tuple[int, str, str, tuple[str, str] | None]] = []
    for number in range(1, migrations + 1):
        model = f"Record{(number - 1) // MODEL_EVERY:03d}"
        if (number - 1) % MODEL_EVERY == 0:
            plan.append((number, f"{number:04d}_create_{model.lower()}", model, None))
            continue
        if number % 3 == 0:
            field = (f"note_{number}", 'models.CharField(max_length=50, default="")')
        elif number % 3 == 1:
            field = (f"amount_{number}", "models.IntegerField(default=0, db_index=True)")
        else:
            field = (f"flag_{number}", "models.BooleanField(default=False)")
        plan.append((number, f"{number:04d}_{model.lower()}_{field[0]}", model, field))
    return plan


DATA_MIGRATION_CODE = """

def seed(apps, schema_editor):
    Model = apps.get_model("history", "{model}")
    Model.objects.using(schema_editor.connection.alias).bulk_create(
        Model(name=f"row-{{index}}") for index in range(20)
    )
"""


def history_files(migrations: int) -> dict[str, str]:
    """The ``history`` app: ``migrations`` migrations and the models they end with."""
    files = {"history/__init__.py": "", "history/migrations/__init__.py": ""}
    fields: dict[str, list[tuple[str, str]]] = {}
    previous: str | None = None
    for number, name, model, field in history_models(migrations):
        code = ""
        if field is None:
            fields[model] = [("name", "models.CharField(max_length=100)")]
            operations = create_model_operation(Model(model, tuple(fields[model])))
        else:
            fields[model].append(field)
            operations = (
                f"        migrations.AddField(\n"
                f'            model_name="{model.lower()}",\n'
                f'            name="{field[0]}",\n'
                f"            field={field[1]},\n"
                f"        ),\n"
            )
        if number % DATA_EVERY == 0:
            code = DATA_MIGRATION_CODE.format(model=model)
            operations += "        migrations.RunPython(seed, migrations.RunPython.noop),\n"
        dependencies = [("history", previous)] if previous else []
        files[f"history/migrations/{name}.py"] = migration_source(dependencies, operations, code)
        previous = name
    files["history/models.py"] = "from django.db import models\n\n\n" + "\n\n".join(
        model_source(Model(model, tuple(model_fields))) for model, model_fields in fields.items()
    )
    return files


def write_project(root: Path, *, tests: int, history: int = 0) -> Path:
    """Write the project into ``root``: the shop suite, and a history of ``history``
    migrations if it is above 0. Returns ``root``."""
    files = {
        "proj/__init__.py": "",
        "proj/settings.py": SETTINGS.format(history_app='    "history",\n' if history else ""),
        "pytest.ini": PYTEST_INI,
        "conftest.py": CONFTEST,
        **shop_files(tests),
    }
    if history:
        files.update(history_files(history))
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text) if name.endswith(".ini") else text)
    return root


def test_count(tests: int) -> int:
    """How many tests pytest collects from a suite written with ``tests``."""
    return SuiteShape.of(tests).total
