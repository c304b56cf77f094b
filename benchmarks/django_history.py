"""Long Django migration histories: time to a first usable database, by path.

The project of :mod:`benchmarks.django_project` with each of two generated histories
(plus Django's own apps): 150 cheap migrations in one app, and the project-shaped
history (160 migrations in eight apps, with relations, alterations, renames, indexes,
constraints and data migrations). Each sample is a new Python process timed from
its spawn to the answer of a query on its first database (imports included):

- ``migrate``: the sticky server runs but has no template for the history yet (each
  sample edits a comment in the last migration, so its fingerprint is new): the
  template is built by Django's ``migrate``;
- ``reuse``: the template is already on the (sticky) server;
- ``ci_migrate``: the CI path without a cache: nothing running, a throwaway server
  is started and the history migrated, as every CI job pays without the cache;
- ``cache``: the CI path with a warm template cache (:func:`time_cache_restore`):
  nothing running, a throwaway server started, the template restored from the cache
  directory (exported, untimed, from the sticky server's template of the sample).

Each child reports where its time went (the import, the container's start, the
template's build or restore, the first copy), so the CI rows come with a breakdown.
Both histories get the same rows (keys ``django_history.*`` and
``django_history.project.*``) and issue 17's target on the cache path.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import django_project
from benchmarks.context import PREFIX, BenchContext
from benchmarks.django_suite import environment
from benchmarks.report import Comparison, Figure, Target
from benchmarks.stats import Summary

#: The throwaway servers of the CI samples (each child's ``stop()`` removes its own).
CI_PREFIX = "benchci"
RUN_TOKEN = secrets.token_hex(4)
GROUP = "Django, {n} migrations: new process -> first usable database"
MIGRATIONS = 150
READY = "READY"

#: The child: freshdb's server for the project's history, a first copy, a query on one
#: of the history's tables (its second argument); its timeline
#: (seconds since the epoch, and what ``stats()`` says the start spent where).
CHILD = """\
import json
import secrets
import sys
import time

import freshdb
from freshdb.migrators import DjangoMigrator

imported = time.time()
server = freshdb.DatabaseServer(
    "postgres", schema=DjangoMigrator("proj.settings"), pool_size=0, **json.loads(sys.argv[1])
)
server.start()
started = time.time()
with server.database() as database, database.engine().connect() as connection:
    connection.exec_driver_sql(f"SELECT count(*) FROM {sys.argv[2]}").scalar()
    ready = time.time()
stats = server.stats()
server.stop()
facts = {
    "imported": imported,
    "started": started,
    "ready": ready,
    "reused": stats["template_reused"],
    "restored": stats["template_restored"],
    "start_seconds": stats["start_seconds"],
    "container_seconds": (stats["server"] or {}).get("startup_seconds") or 0.0,
    "template_seconds": stats["template_build_seconds"] or 0.0,
}
print("READY", json.dumps(facts))
"""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One child's time to its first usable database, and where that time went."""

    seconds: float
    reused: bool
    restored: bool = False
    #: From the spawn to ``import freshdb`` done (the interpreter, Django's import comes later).
    imported: float = 0.0
    #: ``server.start()``'s part: the container's start (a throwaway's run to ready) ...
    container: float = 0.0
    #: ... the template's build or restore (0 when reused) ...
    template: float = 0.0
    #: ... and the whole of ``start()``.
    start: float = 0.0
    #: The first copy, its first connection and the query, after ``start()``.
    first_copy: float = 0.0
    #: From ``import freshdb`` done to ``start()`` called: the server object (the
    #: migrator's fingerprint reads the history), and the rest of the child's imports.
    before_start: float = 0.0

    @property
    def rest_of_start(self) -> float:
        """``start()`` beyond the container and the template (connecting to Docker and
        to the server, the template's lock and checks, the pool)."""
        return self.start - self.container - self.template


@dataclasses.dataclass(frozen=True)
class History:
    """One generated history the group measures: how its project is written, the table
    the child queries, the app whose last migration each sample edits, its rows."""

    #: The rows' key prefix, e.g. ``django_history``.
    key: str
    #: The table header.
    group: str
    #: How the migrate row describes the history.
    described: str
    #: ``write_project``'s history arguments.
    project: dict[str, int]
    table: str
    #: The app whose last migration gets each sample's comment.
    edited_app: str


#: The original history: 150 migrations in one app, 30 small unrelated models.
SIMPLE = History(
    "django_history",
    GROUP.format(n=f"{MIGRATIONS + django_project.DJANGO_APP_MIGRATIONS}"),
    f"{MIGRATIONS} generated + Django's own",
    {"history": MIGRATIONS},
    "history_record000",
    "history",
)
_PROJECT = django_project.ProjectHistory(django_project.PROJECT_MIGRATIONS)
#: The project-shaped history (:class:`benchmarks.django_project.ProjectHistory`).
PROJECT = History(
    "django_history.project",
    (
        f"Django, project-shaped history of "
        f"{django_project.PROJECT_MIGRATIONS + django_project.DJANGO_APP_MIGRATIONS} "
        f"migrations ({len(_PROJECT.apps)} apps): new process -> first usable database"
    ),
    f"{django_project.PROJECT_MIGRATIONS} generated in {len(_PROJECT.apps)} apps + Django's own",
    {"project_history": django_project.PROJECT_MIGRATIONS},
    f"{_PROJECT.apps[0]}_{_PROJECT.live(_PROJECT.apps[0])[0].name.lower()}",
    _PROJECT.migrations[-1].app,
)
HISTORIES = (SIMPLE, PROJECT)


def time_child(root: Path, env: dict[str, str], settings: dict[str, object], table: str) -> Sample:
    """Spawn the child in ``root``; seconds from the spawn to its first query's answer."""
    spawned = time.time()
    result = subprocess.run(
        [sys.executable, "first_database.py", json.dumps(settings), table],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith(READY)), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"the child failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    facts = json.loads(line.removeprefix(READY))
    return Sample(
        seconds=facts["ready"] - spawned,
        reused=bool(facts["reused"]),
        restored=bool(facts["restored"]),
        imported=facts["imported"] - spawned,
        container=float(facts["container_seconds"]),
        template=float(facts["template_seconds"]),
        start=float(facts["start_seconds"]),
        first_copy=facts["ready"] - facts["started"],
        before_start=facts["started"] - facts["imported"] - float(facts["start_seconds"]),
    )


def new_fingerprint(root: Path, sample: int, history: History = SIMPLE) -> None:
    """Edit a comment in the history's last migration: the next build starts from nothing."""
    last = sorted((root / history.edited_app / "migrations").glob("0*.py"))[-1]
    text = last.read_text().split("\n# sample ")[0]
    # A token of the run too: a kept bench server (--keep-servers) has the templates
    # of the previous run's samples.
    last.write_text(f"{text}\n# sample {sample} {RUN_TOKEN}\n")


def export_to_cache(
    root: Path, env: dict[str, str], settings: dict[str, object], table: str
) -> Path:
    """Untimed: export the current history's template (on the sticky server) into a cache
    directory, as a CI job's first run leaves it for the next ones."""
    cache = root / "template-cache"
    cache.mkdir(exist_ok=True)
    exported = time_child(root, env, {**settings, "template_cache": str(cache)}, table)
    if not exported.reused:
        raise RuntimeError("exporting to the cache built the template again")
    return cache


def time_cache_restore(
    root: Path, env: dict[str, str], cache: Path, image: str, table: str
) -> Sample:
    """The CI path with a warm template cache: nothing running, a throwaway server
    (container start included), the template restored from ``cache``, not migrated."""
    settings = {"mode": "throwaway", "prefix": CI_PREFIX, "image": image}
    sample = time_child(root, env, {**settings, "template_cache": str(cache)}, table)
    if not sample.restored:
        raise RuntimeError("the cache sample did not restore its template from the cache")
    return sample


def time_ci_migrate(root: Path, env: dict[str, str], image: str, table: str) -> Sample:
    """The CI path without a cache: nothing running, a throwaway server, ``migrate``."""
    settings: dict[str, object] = {"mode": "throwaway", "prefix": CI_PREFIX, "image": image}
    sample = time_child(root, env, settings, table)
    if sample.reused or sample.restored:
        raise RuntimeError("the CI migrate sample did not migrate")
    return sample


def run(context: BenchContext) -> list[Figure]:
    """For each history: migrating from scratch, reusing the template, and the CI path
    with and without the template cache (throwaway servers), with the breakdown."""
    rows: list[Figure] = []
    for history in HISTORIES:
        rows += figures(measure(context, history), history)
    return rows


def measure(context: BenchContext, history: History) -> dict[str, list[Sample]]:
    """The samples of the four paths for one history."""
    samples = context.count(3, 1)
    env = {**environment(context), "DJANGO_SETTINGS_MODULE": "proj.settings"}
    settings: dict[str, object] = {
        "mode": "sticky",
        "prefix": PREFIX,
        "image": context.postgres_image,
    }
    table = history.table
    taken: dict[str, list[Sample]] = {key: [] for key in ("migrate", "reuse", "ci", "cache")}
    with tempfile.TemporaryDirectory(prefix="freshdb-bench-history-") as temporary:
        root = django_project.write_project(Path(temporary) / "project", tests=1, **history.project)
        (root / "first_database.py").write_text(CHILD)
        for sample in range(samples):
            new_fingerprint(root, sample, history)
            built = time_child(root, env, settings, table)
            if built.reused:
                raise RuntimeError("the migrate sample found a template: its fingerprint is old")
            taken["migrate"].append(built)
            again = time_child(root, env, settings, table)
            if not again.reused:
                raise RuntimeError("the reuse sample built its template again")
            taken["reuse"].append(again)
            cache = export_to_cache(root, env, settings, table)
            # Alternating which CI path goes first: neither always follows the other.
            for path in ("cache", "ci") if sample % 2 == 0 else ("ci", "cache"):
                if path == "cache":
                    measured = time_cache_restore(root, env, cache, context.postgres_image, table)
                else:
                    measured = time_ci_migrate(root, env, context.postgres_image, table)
                taken[path].append(measured)
    return taken


def figures(taken: dict[str, list[Sample]], history: History = SIMPLE) -> list[Figure]:
    """The rows of one history from the samples of each path."""
    group = history.group
    key = history.key

    def seconds(path: str, part: str = "seconds") -> Summary:
        return Summary.of([getattr(sample, part) for sample in taken[path]])

    rows = [
        Figure(
            f"{key}.migrate",
            group,
            f"sticky server, migrate from scratch ({history.described})",
            "s",
            seconds("migrate"),
        ),
        Figure(
            f"{key}.reuse",
            group,
            "sticky server, template there (reused)",
            "s",
            seconds("reuse"),
            Comparison(f"{key}.reuse", f"{key}.migrate", "reuse/migrate"),
        ),
        Figure(
            f"{key}.ci_migrate",
            group,
            "CI: nothing running (throwaway), migrate",
            "s",
            seconds("ci"),
        ),
        Figure(
            f"{key}.cache",
            group,
            "CI: nothing running (throwaway), restored from the template cache",
            "s",
            seconds("cache"),
            Comparison(f"{key}.cache", f"{key}.ci_migrate", "cache/migrate"),
            targets=(TEN_TIMES,),
        ),
    ]
    parts = (
        ("imported", "spawn -> import freshdb done"),
        ("before_start", "server object (history fingerprint), Django's import"),
        ("container", "container start (run -> accepting connections)"),
        ("template", "template restore (and seal)"),
        ("rest_of_start", "rest of start() (Docker and server connections, lock)"),
        ("first_copy", "first copy + its first connection + query"),
    )
    for path, name in (("cache", "cache"), ("ci", "migrate")):
        for part, label in parts:
            row = f"{key}.{path}.{part}"
            comparison = None
            if part == "template" and path == "cache":
                comparison = Comparison(row, f"{key}.ci.template", "restore/migrate")
            if part == "template" and path == "ci":
                label = "template build (Django's migrate)"
            rows.append(
                Figure(
                    row, group, f"  CI {name} path: {label}", "s", seconds(path, part), comparison
                )
            )
    # What bounds the ratio: the cache path's time without its template step, i.e.
    # what it would take if the restore cost nothing.
    rows.append(
        Figure(
            f"{key}.cache.bound",
            group,
            "  CI cache path less its template step (the ratio's floor)",
            "s",
            Summary.of([sample.seconds - sample.template for sample in taken["cache"]]),
            Comparison(f"{key}.cache.bound", f"{key}.ci_migrate", "floor/migrate"),
        )
    )
    return rows


#: Issue 17: the CI path with a warm cache at least 10x faster than migrating.
TEN_TIMES = Target("ratio", 0.1, "cache/migrate <= 0.10")
