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
  has nothing to add. Cheap to migrate (~8 ms a migration): one app, small models,
  no relation, one operation each.
- the project-shaped history (``project_history > 0``, :class:`ProjectHistory`): a
  history shaped like a real project's, 160 migrations by default, in eight apps
  (``accounts``, ``catalog``, ``orders``, ``inventory``, ``billing``, ``shipping``,
  ``support``, ``reports``) that appear over the history's life (the fourth after 12
  migrations, the last after 110) and get lopsided shares of it (``orders`` and
  ``catalog`` most, as the core apps of a real project do). Each app's initial
  migration creates three models; later migrations have 1-7 operations (~60 % one,
  a mean of ~2) drawn with the weights of :data:`PROJECT_OPERATION_KINDS`. The mix
  follows the counts of operation kinds in two open-source projects' migrations
  folders, Saleor (~1,400 migrations in 26 apps) and Healthchecks (~190 in 4):
  AlterField ~30 % of the operations there (here type and length changes, int to
  bigint, nullable, an index, another default or ``on_delete``), AddField ~25 %,
  RunPython ~9 %, RemoveField ~7 %, CreateModel ~5 %, RenameField ~4 %, AddIndex
  ~3 %, AlterModelOptions ~5 %, unique constraints and ``unique_together`` ~2 %, a
  rare DeleteModel and RemoveIndex (RunSQL and SeparateDatabaseAndState, ~7 % in
  Saleor, are left out: they cost whatever SQL they hold). Models have a name, a
  timestamp and 2-6 fields of the usual kinds (strings, foreign keys within the app,
  across apps and to the user model, many-to-many, decimals, flags, numbers, dates,
  JSON); a field added later is nullable or has a default, as one added to a table
  with rows must. A data migration inserts 20-200 rows into a model whose required
  relations point at seeded models, or back-fills a column of a seeded model row by
  row. Migrations depend on their app's previous one and on the latest migration of
  each app they point into, as ``makemigrations`` writes them. The choices come from
  a fixed seed, so every run measures the same history; every app's ``models.py`` is
  the end state.

Model and migration sources come from one description of each field, so the two
cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import random
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
#: The same, as ``makemigrations`` writes it (the project-shaped history).
ID_FIELD_WITH_NAME = (
    'models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")'
)


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


def write_project(root: Path, *, tests: int, history: int = 0, project_history: int = 0) -> Path:
    """Write the project into ``root``: the shop suite, a history of ``history``
    migrations if it is above 0, and the project-shaped history of ``project_history``
    migrations (its apps) if that is. Returns ``root``."""
    apps: list[str] = ["history"] if history else []
    extra: dict[str, str] = history_files(history) if history else {}
    if project_history:
        generated = ProjectHistory(project_history)
        apps += generated.apps
        extra.update(generated.files())
    files = {
        "proj/__init__.py": "",
        "proj/settings.py": SETTINGS.format(history_app="".join(f'    "{a}",\n' for a in apps)),
        "pytest.ini": PYTEST_INI,
        "conftest.py": CONFTEST,
        **shop_files(tests),
        **extra,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text) if name.endswith(".ini") else text)
    return root


def test_count(tests: int) -> int:
    """How many tests pytest collects from a suite written with ``tests``."""
    return SuiteShape.of(tests).total


# -- the project-shaped history ---------------------------------------------------
#: The project-shaped history's apps, in the order they appear in it, with how many of
#: the history's later migrations each gets (real projects are lopsided: one or two
#: core apps hold most of the history) and the names its models take.
PROJECT_APPS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    (
        "accounts",
        4,
        (
            "Organization",
            "Profile",
            "Membership",
            "Address",
            "Invitation",
            "ApiToken",
            "Team",
            "Role",
            "Consent",
            "LoginEvent",
            "Session",
            "Notification",
        ),
    ),
    (
        "catalog",
        6,
        (
            "Category",
            "Brand",
            "Product",
            "Variant",
            "Attribute",
            "Collection",
            "Image",
            "Review",
            "PriceList",
            "Channel",
            "Translation",
            "Bundle",
        ),
    ),
    (
        "orders",
        7,
        (
            "Order",
            "OrderLine",
            "Fulfillment",
            "OrderEvent",
            "Cart",
            "CartLine",
            "Voucher",
            "GiftCard",
            "ReturnRequest",
            "ReturnLine",
            "Note",
            "Discount",
        ),
    ),
    (
        "inventory",
        3,
        (
            "Warehouse",
            "Stock",
            "Allocation",
            "Supplier",
            "PurchaseOrder",
            "StockMove",
            "Reservation",
            "Batch",
        ),
    ),
    (
        "billing",
        4,
        (
            "Invoice",
            "Payment",
            "Refund",
            "TaxRate",
            "Plan",
            "Subscription",
            "Transaction",
            "CreditNote",
            "PayoutAccount",
        ),
    ),
    ("shipping", 2, tuple(("Zone", "Method", "Rate", "Shipment", "Carrier", "Parcel", "Pickup"))),
    ("support", 2, tuple(("Ticket", "Message", "Attachment", "Label", "Macro", "Survey"))),
    ("reports", 1, tuple(("Report", "Schedule", "Export", "Snapshot", "Metric", "Dashboard"))),
)
#: The migration (0-based position in the whole history) at which each app's initial
#: migration comes: a project gains its apps over its life, not all on the first day.
PROJECT_APP_STARTS = (0, 1, 3, 12, 30, 55, 80, 110)
#: How many models an app's initial migration creates.
PROJECT_INITIAL_MODELS = 3
#: Operations per migration after the initial ones, and how often each count comes
#: (like the reference histories: ~60 % a single operation, a mean of ~2).
PROJECT_OPERATION_COUNTS = ((1, 58), (2, 20), (3, 9), (4, 6), (5, 4), (7, 3))
#: The kinds of operation of the migrations after the initial ones, with their weights
#: (a share in % of the operations), after the reference histories' counts: AlterField
#: and AddField most, data migrations, RemoveField, new models, RenameField, indexes,
#: options, unique constraints; a rare DeleteModel and RemoveIndex. (RunSQL and
#: SeparateDatabaseAndState, ~7 % there, are left out: their cost is whatever SQL they
#: hold.)
PROJECT_OPERATION_KINDS = (
    ("AlterField", 30),
    ("AddField", 26),
    ("RunPython", 9),
    ("RemoveField", 7),
    ("CreateModel", 6),
    ("RenameField", 5),
    ("AddIndex", 5),
    ("AlterModelOptions", 5),
    ("AddConstraint", 2),
    ("AlterUniqueTogether", 2),
    ("DeleteModel", 2),
    ("RemoveIndex", 1),
)
#: Field kinds of added fields and of new models' fields, with their weights (strings,
#: relations, numbers, flags, dates and JSON roughly as in the reference histories).
PROJECT_FIELD_KINDS = (
    ("char", 26),
    ("fk", 16),
    ("decimal", 9),
    ("bool", 8),
    ("int", 8),
    ("datetime", 8),
    ("json", 6),
    ("text", 5),
    ("m2m", 4),
    ("user", 3),
)
#: Names a new field of each kind takes (suffixed when the model had it already).
PROJECT_FIELD_NAMES = {
    "char": ("status", "code", "reference", "label", "currency", "phone", "city", "sku", "title"),
    "text": ("description", "notes", "comment", "body", "terms"),
    "int": ("position", "quantity", "priority", "retries", "weight", "points"),
    "decimal": ("amount", "price", "total", "discount", "tax", "balance"),
    "bool": ("is_active", "is_public", "archived", "verified", "paid", "visible"),
    "datetime": ("updated_at", "closed_at", "sent_at", "expires_at", "published_at"),
    "json": ("metadata", "private_metadata", "settings", "payload"),
    "fk": ("parent", "owner", "source", "target", "origin", "group"),
    "m2m": ("members", "related", "followers", "tags"),
    "user": ("created_by", "assigned_to", "approved_by", "user"),
}
#: Rows a data migration inserts or visits: modest, as a real history's seeding of
#: lookup tables or back-filling of a column is.
PROJECT_SEED_ROWS = (20, 200)
#: The random choices' seed: every run generates (and measures) the same history.
PROJECT_SEED = 17
#: The history's length, Django's own apps' migrations not counted.
PROJECT_MIGRATIONS = 160


@dataclasses.dataclass
class Column:
    """A field of a model of the project-shaped history, as it stands at one point."""

    kind: str
    max_length: int = 0
    null: bool = False
    db_index: bool = False
    #: The default's source (``None``: none).
    default: str | None = None
    #: A relation's ``app.model`` (``user``: the user model).
    target: str = ""
    on_delete: str = "CASCADE"
    related_name: str = ""
    digits: int = 10
    #: Set at the model's creation and never changed (the seeded name, the timestamp).
    fixed: bool = False

    def expression(self) -> str:
        """The field's source, as it appears in the migration and in ``models.py``."""
        options: list[str] = []
        if self.kind in ("char", "text", "json", "datetime") and not self.fixed:
            options.append("blank=True")
        if self.kind == "fk" and self.null:
            options.append("blank=True")
        if self.kind == "decimal":
            options.append("decimal_places=2")
        if self.db_index:
            options.append("db_index=True")
        if self.default is not None:
            options.append(f"default={self.default}")
        if self.max_length:
            options.append(f"max_length={self.max_length}")
        if self.kind == "decimal":
            options.append(f"max_digits={self.digits}")
        if self.null:
            options.append("null=True")
        if self.kind == "fk":
            options.append(f"on_delete=models.{self.on_delete}")
        if self.related_name:
            options.append(f'related_name="{self.related_name}"')
        if self.target == "user":
            options.append("to=settings.AUTH_USER_MODEL")
        elif self.target:
            options.append(f'to="{self.target}"')
        if self.kind == "m2m":
            options.insert(0, "blank=True")
        classes = {
            "char": "CharField",
            "text": "TextField",
            "int": "IntegerField",
            "bigint": "BigIntegerField",
            "decimal": "DecimalField",
            "bool": "BooleanField",
            "datetime": "DateTimeField",
            "json": "JSONField",
            "fk": "ForeignKey",
            "m2m": "ManyToManyField",
        }
        if self.kind == "datetime" and self.fixed:
            options = ["auto_now_add=True"]
        return f"models.{classes[self.kind]}({', '.join(options)})"

    def alterations(self) -> list[Column]:
        """What an ``AlterField`` may make of this field: a longer string, a wider number,
        a nullable column, an index, another default or ``on_delete``."""
        change = dataclasses.replace
        found: list[Column] = []
        if self.fixed or self.kind == "m2m":
            return found
        if self.kind == "char" and self.max_length < 255:
            found.append(change(self, max_length=min(255, self.max_length * 2)))
        if self.kind == "int":
            found.append(change(self, kind="bigint"))
        if self.kind == "decimal" and self.digits < 16:
            found.append(change(self, digits=self.digits + 2))
        if self.kind == "bool":
            found.append(change(self, default="True" if self.default == "False" else "False"))
        if self.kind in ("char", "text", "json") and not self.null:
            found.append(change(self, null=True))
        if self.kind in ("char", "int", "bigint", "datetime") and not self.db_index:
            found.append(change(self, db_index=True))
        if self.kind == "fk" and self.on_delete == "CASCADE":
            found.append(
                change(self, on_delete="SET_NULL", null=True)
                if self.null
                else change(self, on_delete="PROTECT")
            )
        return found


@dataclasses.dataclass
class ProjectModel:
    """A model of the project-shaped history and what its ``Meta`` holds."""

    app: str
    name: str
    fields: dict[str, Column]
    indexes: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    constraints: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    unique_together: tuple[str, ...] = ()
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Every field name the model has had: a name is never used twice.
    used: set[str] = dataclasses.field(default_factory=set)
    #: Whether a data migration put rows in it.
    seeded: bool = False
    initial: bool = False

    @property
    def label(self) -> str:
        """``app.model``, as a relation names it."""
        return f"{self.app}.{self.name.lower()}"

    @property
    def protected(self) -> set[str]:
        """Fields an index, a constraint or the options name: left as they are."""
        names = {"name", "created"}
        for fields in (*self.indexes.values(), *self.constraints.values(), self.unique_together):
            names.update(fields)
        return names

    def meta_source(self) -> str:
        """The model's ``Meta`` for ``models.py`` (empty without options)."""
        lines: list[str] = []
        for key, value in self.options.items():
            lines.append(f"        {key} = {value}")
        if self.unique_together:
            lines.append(f"        unique_together = [{tuple(self.unique_together)!r}]")
        if self.indexes:
            shown = ", ".join(index_source(n, f) for n, f in self.indexes.items())
            lines.append(f"        indexes = [{shown}]")
        if self.constraints:
            shown = ", ".join(constraint_source(n, f) for n, f in self.constraints.items())
            lines.append(f"        constraints = [{shown}]")
        return "\n    class Meta:\n" + "\n".join(lines) + "\n" if lines else ""

    def source(self) -> str:
        """The model's class for ``models.py``."""
        lines = [f"class {self.name}(models.Model):"]
        lines += [f"    {name} = {column.expression()}" for name, column in self.fields.items()]
        return "\n".join(lines) + "\n" + self.meta_source()


def index_source(name: str, fields: tuple[str, ...]) -> str:
    """A ``models.Index``."""
    return f"models.Index(fields={list(fields)!r}, name={name!r})"


def constraint_source(name: str, fields: tuple[str, ...]) -> str:
    """A ``models.UniqueConstraint``."""
    return f"models.UniqueConstraint(fields={list(fields)!r}, name={name!r})"


@dataclasses.dataclass(frozen=True)
class Operation:
    """One generated operation: its source, a word for the migration's name, the apps
    it points into and whether it points at the user model."""

    source: str
    slug: str
    apps: frozenset[str] = frozenset()
    user: bool = False
    kind: str = ""


@dataclasses.dataclass
class ProjectMigration:
    """One migration of the project-shaped history: its operations' sources, what it
    depends on and the data functions its ``RunPython`` operations call."""

    app: str
    name: str
    operations: list[str]
    kinds: list[str]
    dependencies: set[tuple[str, str]]
    functions: list[str]
    uses_user: bool

    def source(self) -> str:
        """The migration module."""
        imports = "from django.db import migrations, models\n"
        dependencies = [f"({app!r}, {name!r})" for app, name in sorted(self.dependencies)]
        if self.uses_user:
            imports = "from django.conf import settings\n" + imports
            dependencies.append("migrations.swappable_dependency(settings.AUTH_USER_MODEL)")
        shown = "".join(f"        {dependency},\n" for dependency in dependencies)
        functions = "".join(f"\n\n{function}" for function in self.functions)
        return (
            f"{imports}{functions}\n\n"
            "class Migration(migrations.Migration):\n"
            f"    dependencies = [\n{shown}    ]\n"
            f"    operations = [\n{''.join(self.operations)}    ]\n"
        )


class ProjectHistory:
    """The project-shaped history, generated migration by migration from a seeded random
    choice of operations whose kinds follow :data:`PROJECT_OPERATION_KINDS`; the state
    of every model is kept, so each operation is valid where it stands and
    ``models.py`` is the end state."""

    def __init__(self, migrations: int = PROJECT_MIGRATIONS, seed: int = PROJECT_SEED) -> None:
        self.random = random.Random(seed)
        self.models: dict[str, ProjectModel] = {}
        self.names: dict[str, list[str]] = {app: list(names) for app, _, names in PROJECT_APPS}
        self.latest: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.migrations: list[ProjectMigration] = []
        self.serial = 0
        starts = dict(zip(PROJECT_APP_STARTS, PROJECT_APPS, strict=True))
        for position in range(migrations):
            if position in starts:
                self.migrations.append(self.initial(starts[position][0]))
            else:
                self.migrations.append(self.later())

    # -- the state ----------------------------------------------------------------
    def next_serial(self) -> int:
        """A number not given before (unique index, constraint and model names)."""
        self.serial += 1
        return self.serial

    def live(self, app: str | None = None) -> list[ProjectModel]:
        """The models that exist now (of ``app``)."""
        return [m for m in self.models.values() if app is None or m.app == app]

    def field_name(self, model: ProjectModel, kind: str) -> str:
        """A name for a new field of ``model`` that it has never had."""
        pool = PROJECT_FIELD_NAMES[kind]
        name = self.random.choice(pool)
        suffix = 2
        candidate = name
        while candidate in model.used:
            candidate = f"{name}_{suffix}"
            suffix += 1
        model.used.add(candidate)
        return candidate

    def column(self, model: ProjectModel, kind: str, name: str, *, added: bool) -> Column:
        """A new field: an added one is nullable or has a default, as a column added to
        a table with rows must; a new model's relations are required."""
        if kind == "char":
            return Column("char", max_length=self.random.choice((32, 50, 100)), default='""')
        if kind == "text":
            return Column("text", default='""')
        if kind == "int":
            return Column("int", default="0")
        if kind == "decimal":
            return Column("decimal", default="0")
        if kind == "bool":
            return Column("bool", default=self.random.choice(("False", "True")))
        if kind == "datetime":
            return Column("datetime", null=True)
        if kind == "json":
            return Column("json", default="dict")
        related = f"{model.name.lower()}s_by_{name}"
        if kind == "m2m":
            targets = [m for m in self.live() if m is not model]
            return Column("m2m", target=self.random.choice(targets).label, related_name=related)
        if kind == "user":
            return Column(
                "fk", target="user", null=True, on_delete="SET_NULL", related_name=related
            )
        # Mostly within the app, sometimes across apps, sometimes the model itself.
        same_app = [m for m in self.live(model.app) if m is not model]
        roll = self.random.random()
        if roll < 0.1 or not (same_app or len(self.live()) > 1):
            target = model
        elif roll < 0.6 and same_app:
            target = self.random.choice(same_app)
        else:
            target = self.random.choice([m for m in self.live() if m is not model] or [model])
        # A self relation or one added later is nullable (its rows exist already).
        null = added or target is model
        return Column("fk", target=target.label, null=null, related_name=related)

    def references(self, column: Column) -> set[str]:
        """The apps a field's relation points into."""
        return {column.target.split(".")[0]} if "." in column.target else set()

    # -- operations -----------------------------------------------------------------
    def field_operation(
        self, kind: str, lower: str, field: str, column: Column, name: str
    ) -> Operation:
        """An ``AddField`` or ``AlterField`` of ``column`` on model ``lower``."""
        source = (
            f"        migrations.{kind}(\n"
            f'            model_name="{lower}",\n'
            f'            name="{field}",\n'
            f"            field={column.expression()},\n"
            f"        ),\n"
        )
        return Operation(source, name, frozenset(self.references(column)), column.target == "user")

    def create_model(self, app: str, *, initial: bool) -> Operation:
        """A ``CreateModel``: a name, a timestamp, and 2-6 fields of the usual kinds."""
        names = self.names[app]
        name = names.pop(0) if names else f"{app.title()}Item{self.next_serial()}"
        model = ProjectModel(app, name, {}, initial=initial, used={"id", "name", "created"})
        model.fields["name"] = Column("char", max_length=100, fixed=True)
        model.fields["created"] = Column("datetime", fixed=True)
        self.models[model.label] = model
        kinds, weights = zip(*PROJECT_FIELD_KINDS, strict=True)
        for _ in range(self.random.randint(2, 6)):
            kind = self.random.choices(kinds, weights)[0]
            if kind == "m2m" and len(self.live()) < 2:
                kind = "char"
            field = self.field_name(model, kind)
            model.fields[field] = self.column(model, kind, field, added=False)
        apps: set[str] = set()
        user = False
        rows = [f'                ("id", {ID_FIELD_WITH_NAME}),\n']
        for field, column in model.fields.items():
            rows.append(f'                ("{field}", {column.expression()}),\n')
            apps |= self.references(column)
            user = user or column.target == "user"
        source = (
            f"        migrations.CreateModel(\n"
            f'            name="{name}",\n'
            f"            fields=[\n{''.join(rows)}            ],\n"
            f"        ),\n"
        )
        return Operation(source, name.lower(), frozenset(apps), user, "CreateModel")

    def operation(self, app: str, kind: str) -> Operation | None:
        """One operation of ``kind`` on a model of ``app``, or ``None`` if none fits now."""
        models = self.live(app)
        if kind == "CreateModel":
            return self.create_model(app, initial=False)
        model = self.random.choice(models)
        free = [
            name
            for name, column in model.fields.items()
            if name not in model.protected and column.kind != "m2m"
        ]
        lower = model.name.lower()
        if kind == "AddField":
            kinds, weights = zip(*PROJECT_FIELD_KINDS, strict=True)
            field_kind = self.random.choices(kinds, weights)[0]
            field = self.field_name(model, field_kind)
            column = self.column(model, field_kind, field, added=True)
            model.fields[field] = column
            return self.field_operation("AddField", lower, field, column, f"{lower}_{field}")
        if kind == "AlterField":
            choices = [(n, c) for n in free for c in model.fields[n].alterations()]
            if not choices:
                return None
            field, column = self.random.choice(choices)
            model.fields[field] = column
            return self.field_operation(
                "AlterField", lower, field, column, f"alter_{lower}_{field}"
            )
        if kind == "RemoveField":
            if not free:
                return None
            field = self.random.choice(free)
            del model.fields[field]
            source = (
                f"        migrations.RemoveField(\n"
                f'            model_name="{lower}",\n'
                f'            name="{field}",\n'
                f"        ),\n"
            )
            return Operation(source, f"remove_{lower}_{field}")
        if kind == "RenameField":
            if not free:
                return None
            field = self.random.choice(free)
            new = f"{field}_{self.random.choice(('value', 'old', 'text', 'ref', 'new'))}"
            if new in model.used:
                return None
            model.used.add(new)
            model.fields = {new if n == field else n: c for n, c in model.fields.items()}
            source = (
                f"        migrations.RenameField(\n"
                f'            model_name="{lower}",\n'
                f'            old_name="{field}",\n'
                f'            new_name="{new}",\n'
                f"        ),\n"
            )
            return Operation(source, f"rename_{field}_{lower}_{new}")
        if kind == "AddIndex":
            candidates = [n for n in free if model.fields[n].kind not in ("json", "text")]
            if not candidates:
                return None
            fields = tuple(self.random.sample(candidates, min(len(candidates), 2)))
            fields = fields[: self.random.randint(1, len(fields))]
            name = f"{app[:4]}_{lower[:8]}_{self.next_serial():03d}_idx"
            model.indexes[name] = fields
            source = (
                f"        migrations.AddIndex(\n"
                f'            model_name="{lower}",\n'
                f"            index={index_source(name, fields)},\n"
                f"        ),\n"
            )
            return Operation(source, f"{lower}_{name}")
        if kind == "RemoveIndex":
            if not model.indexes:
                return None
            name = self.random.choice(sorted(model.indexes))
            del model.indexes[name]
            source = (
                f"        migrations.RemoveIndex(\n"
                f'            model_name="{lower}",\n'
                f'            name="{name}",\n'
                f"        ),\n"
            )
            return Operation(source, f"remove_{lower}_{name}")
        relations = [n for n, c in model.fields.items() if c.kind == "fk" and not c.null]
        if kind == "AddConstraint":
            # Unique names (the seeds' names are unique), or a name unique per parent.
            fields = ("name", self.random.choice(relations)) if relations else ("name",)
            name = f"{app[:4]}_{lower[:8]}_{self.next_serial():03d}_uniq"
            if fields in model.constraints.values():
                return None
            model.constraints[name] = fields
            source = (
                f"        migrations.AddConstraint(\n"
                f'            model_name="{lower}",\n'
                f"            constraint={constraint_source(name, fields)},\n"
                f"        ),\n"
            )
            return Operation(source, f"{lower}_{name}")
        if kind == "AlterUniqueTogether":
            if model.unique_together or not relations:
                return None
            model.unique_together = ("name", self.random.choice(relations))
            source = (
                f"        migrations.AlterUniqueTogether(\n"
                f'            name="{lower}",\n'
                f"            unique_together={{{model.unique_together!r}}},\n"
                f"        ),\n"
            )
            return Operation(source, f"alter_{lower}_unique_together")
        if kind == "AlterModelOptions":
            options = dict(model.options)
            options["ordering"] = repr([self.random.choice(("name", "-created", "-id"))])
            options["verbose_name_plural"] = repr(f"{lower} records {self.next_serial()}")
            model.options = options
            shown = ", ".join(f"{key!r}: {value}" for key, value in options.items())
            source = (
                f"        migrations.AlterModelOptions(\n"
                f'            name="{lower}",\n'
                f"            options={{{shown}}},\n"
                f"        ),\n"
            )
            return Operation(source, f"alter_{lower}_options")
        if kind == "DeleteModel":
            # A short-lived model no other model points to.
            pointed = {c.target for m in self.live() for c in m.fields.values() if m is not model}
            if model.initial or model.label in pointed:
                return None
            del self.models[model.label]
            return Operation(
                f'        migrations.DeleteModel(name="{model.name}"),\n', f"delete_{lower}"
            )
        raise ValueError(f"unknown operation kind {kind!r}")

    def data_operation(self, app: str, index: int) -> tuple[str, Operation] | None:
        """A ``RunPython`` data migration on a model of ``app``: seeding rows of a model
        whose required relations point at seeded models, or back-filling a column of a
        seeded model row by row. Its function's source, and the operation."""
        rows = self.random.randint(*PROJECT_SEED_ROWS)
        function = f"forwards_{index}"
        seedable = []
        for model in self.live(app):
            required = [(n, c) for n, c in model.fields.items() if c.kind == "fk" and not c.null]
            parents = [self.models.get(c.target) for _, c in required]
            if all(p is not None and p.seeded for p in parents):
                seedable.append((model, required))
        backfill = [
            (model, name)
            for model in self.live(app)
            if model.seeded
            for name, column in model.fields.items()
            if name not in model.protected and column.kind in ("char", "int", "bool", "decimal")
        ]
        if backfill and (not seedable or self.random.random() < 0.4):
            model, field = self.random.choice(backfill)
            column = model.fields[field]
            value = {
                "char": f"str(row.pk)[:{column.max_length}]",
                "int": "row.pk % 100",
                "bool": "row.pk % 2 == 0",
                "decimal": "row.pk",
            }[column.kind]
            body = (
                f"def {function}(apps, schema_editor):\n"
                f'    Model = apps.get_model("{app}", "{model.name}")\n'
                f"    alias = schema_editor.connection.alias\n"
                f'    for row in Model.objects.using(alias).order_by("pk")[:{rows}]:\n'
                f"        row.{field} = {value}\n"
                f'        row.save(update_fields=["{field}"])\n'
            )
            run = f"        migrations.RunPython({function}, migrations.RunPython.noop),\n"
            return body, Operation(run, f"backfill_{model.name.lower()}_{field}", kind="RunPython")
        if not seedable:
            return None
        model, required = self.random.choice(seedable)
        serial = self.next_serial()
        lines = [
            f"def {function}(apps, schema_editor):\n",
            f'    Model = apps.get_model("{app}", "{model.name}")\n',
            "    alias = schema_editor.connection.alias\n",
        ]
        apps: set[str] = set()
        arguments = ""
        for name, column in required:
            parent_app, parent = column.target.split(".")
            apps.add(parent_app)
            lines.append(
                f'    {name} = apps.get_model("{parent_app}", "{parent}")'
                f'.objects.using(alias).order_by("pk").first()\n'
            )
            arguments += f", {name}={name}"
        lines.append(
            "    Model.objects.using(alias).bulk_create(\n"
            f'        Model(name=f"{model.name.lower()}-{serial}-{{index}}"{arguments})\n'
            f"        for index in range({rows})\n"
            "    )\n"
        )
        model.seeded = True
        run = f"        migrations.RunPython({function}, migrations.RunPython.noop),\n"
        operation = Operation(
            run, f"populate_{model.name.lower()}", frozenset(apps), False, "RunPython"
        )
        return "".join(lines), operation

    # -- migrations -----------------------------------------------------------------
    def initial(self, app: str) -> ProjectMigration:
        """An app's initial migration: its first models, as ``makemigrations`` makes them."""
        made = [self.create_model(app, initial=True) for _ in range(PROJECT_INITIAL_MODELS)]
        return self.migration(app, "initial", made, [])

    def later(self) -> ProjectMigration:
        """A migration after the initial ones: an app (weighted), 1-7 operations."""
        present = [(app, weight) for app, weight, _ in PROJECT_APPS if app in self.latest]
        app = self.random.choices([a for a, _ in present], [w for _, w in present])[0]
        counts, count_weights = zip(*PROJECT_OPERATION_COUNTS, strict=True)
        wanted = self.random.choices(counts, count_weights)[0]
        kinds, weights = zip(*PROJECT_OPERATION_KINDS, strict=True)
        made: list[Operation] = []
        data = 0
        for _ in range(50):
            if len(made) + data >= wanted:
                break
            kind = self.random.choices(kinds, weights)[0]
            if kind == "RunPython":
                data += 1
                continue
            operation = self.operation(app, kind)
            if operation is not None:
                made.append(dataclasses.replace(operation, kind=kind))
        # Data operations last: rows inserted before a schema change of the same table
        # in one transaction would leave Postgres with pending trigger events.
        functions: list[str] = []
        for index in range(data):
            found = self.data_operation(app, index)
            if found is not None:
                function, operation = found
                functions.append(function)
                made.append(operation)
        if not made:
            return self.later()
        slug = made[0].slug + ("_and_more" if len(made) > 1 else "")
        return self.migration(app, slug, made, functions)

    def migration(
        self, app: str, slug: str, made: list[Operation], functions: list[str]
    ) -> ProjectMigration:
        """The next migration of ``app``: it depends on the app's previous one and on the
        latest of each other app it points into (as ``makemigrations`` writes them)."""
        number = self.counts.get(app, 0) + 1
        self.counts[app] = number
        name = f"{number:04d}_{slug}"[:60]
        dependencies = {
            (other, self.latest[other]) for o in made for other in o.apps if other != app
        }
        if app in self.latest:
            dependencies.add((app, self.latest[app]))
        self.latest[app] = name
        return ProjectMigration(
            app,
            name,
            [operation.source for operation in made],
            [operation.kind for operation in made],
            dependencies,
            functions,
            any(operation.user for operation in made),
        )

    # -- the files ------------------------------------------------------------------
    def files(self) -> dict[str, str]:
        """Every app's package, its migrations and its ``models.py`` (the end state)."""
        files: dict[str, str] = {}
        for app, _, _ in PROJECT_APPS:
            if app not in self.latest:
                continue
            files[f"{app}/__init__.py"] = ""
            files[f"{app}/migrations/__init__.py"] = ""
            classes = "\n\n".join(model.source() for model in self.live(app))
            header = "from django.db import models\n"
            if "settings.AUTH_USER_MODEL" in classes:
                header = "from django.conf import settings\n" + header
            files[f"{app}/models.py"] = f"{header}\n\n{classes}"
        for migration in self.migrations:
            files[f"{migration.app}/migrations/{migration.name}.py"] = migration.source()
        return files

    @property
    def apps(self) -> list[str]:
        """The apps, in the order they appear."""
        return [app for app, _, _ in PROJECT_APPS if app in self.latest]

    def operation_counts(self) -> dict[str, int]:
        """How many operations of each kind the history has."""
        counts: dict[str, int] = {}
        for migration in self.migrations:
            for kind in migration.kinds:
                counts[kind] = counts.get(kind, 0) + 1
        return counts
