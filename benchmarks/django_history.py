"""A long Django migration history: time to a first usable database, by path.

The project of :mod:`benchmarks.django_project` with a history of 150 generated
migrations (plus Django's own apps), each sample a new Python process timed from
its spawn to the answer of a query on its first database (imports included):

- ``migrate``: no template for the history yet (each sample edits a comment in the
  last migration, so its fingerprint is new): the template is built by Django's
  ``migrate``, as every CI job on a throwaway server does today;
- ``reuse``: the template is already on the (sticky) server;
- ``cache``: the template restored from a CI template cache — measured by
  :func:`time_cache_restore` once freshdb has the ``template_cache`` setting; until
  then the row says it is not measured.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import django_project
from benchmarks.context import PREFIX, BenchContext
from benchmarks.django_suite import environment
from benchmarks.report import Comparison, Figure
from benchmarks.stats import Summary

GROUP = "Django, {n} migrations: new process -> first usable database"
MIGRATIONS = 150
READY = "READY"

#: The child: freshdb's server for the project's history, a first copy, a query.
CHILD = """\
import json
import os
import sys
import time

import freshdb
from freshdb.migrators import DjangoMigrator

server = freshdb.DatabaseServer(
    "postgres", schema=DjangoMigrator("proj.settings"), pool_size=0, **json.loads(sys.argv[1])
)
server.start()
with server.database() as database, database.engine().connect() as connection:
    connection.exec_driver_sql("SELECT count(*) FROM history_record000").scalar()
    ready = time.time()
stats = server.stats()
server.stop()
print("READY", json.dumps({"ready": ready, "reused": stats["template_reused"]}))
"""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One child's time to its first usable database, and whether it reused a template."""

    seconds: float
    reused: bool


def time_child(root: Path, env: dict[str, str], settings: dict[str, object]) -> Sample:
    """Spawn the child in ``root``; seconds from the spawn to its first query's answer."""
    spawned = time.time()
    result = subprocess.run(
        [sys.executable, "first_database.py", json.dumps(settings)],
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
    return Sample(facts["ready"] - spawned, bool(facts["reused"]))


def new_fingerprint(root: Path, sample: int) -> None:
    """Edit a comment in the history's last migration: the next build starts from nothing."""
    last = sorted((root / "history" / "migrations").glob("0*.py"))[-1]
    text = last.read_text().split("\n# sample ")[0]
    last.write_text(f"{text}\n# sample {sample}\n")


def time_cache_restore(
    root: Path, env: dict[str, str], settings: dict[str, object]
) -> Sample | None:
    """The CI path with a warm template cache: the template restored, not migrated.

    ``None`` while freshdb has no ``template_cache`` setting. Once it has: export the
    template into a cache directory (``freshdb warm --export DIR``), then time a
    child on a server without the template, with ``template_cache=DIR``.
    """
    from freshdb.config import Settings

    if "template_cache" not in {field.name for field in dataclasses.fields(Settings)}:
        return None
    cache = root / "template-cache"
    cache.mkdir(exist_ok=True)
    return time_child(root, env, {**settings, "template_cache": str(cache)})


def run(context: BenchContext) -> list[Figure]:
    """Migrating from scratch, reusing the template, and (when there) the cached path."""
    samples = context.count(3, 1)
    env = {**environment(context), "DJANGO_SETTINGS_MODULE": "proj.settings"}
    settings: dict[str, object] = {
        "mode": "sticky",
        "prefix": PREFIX,
        "image": context.postgres_image,
    }
    migrate: list[float] = []
    reuse: list[float] = []
    cached: list[float] = []
    with tempfile.TemporaryDirectory(prefix="freshdb-bench-history-") as temporary:
        root = django_project.write_project(
            Path(temporary) / "project", tests=1, history=MIGRATIONS
        )
        (root / "first_database.py").write_text(CHILD)
        for sample in range(samples):
            new_fingerprint(root, sample)
            built = time_child(root, env, settings)
            if built.reused:
                raise RuntimeError("the migrate sample found a template: its fingerprint is old")
            migrate.append(built.seconds)
            again = time_child(root, env, settings)
            if not again.reused:
                raise RuntimeError("the reuse sample built its template again")
            reuse.append(again.seconds)
            restored = time_cache_restore(root, env, settings)
            if restored is not None:
                cached.append(restored.seconds)
    total = MIGRATIONS + django_project.DJANGO_APP_MIGRATIONS
    group = GROUP.format(n=f"{total}")
    figures = [
        Figure(
            "django_history.migrate",
            group,
            f"migrate from scratch (no template; {MIGRATIONS} generated + Django's own)",
            "s",
            Summary.of(migrate),
        ),
        Figure(
            "django_history.reuse",
            group,
            "template on the sticky server (reused)",
            "s",
            Summary.of(reuse),
            Comparison("django_history.reuse", "django_history.migrate", "reuse/migrate"),
        ),
    ]
    figures.append(
        Figure(
            "django_history.cache",
            group,
            "restored from the CI template cache",
            "s",
            Summary.of(cached) if cached else None,
            Comparison("django_history.cache", "django_history.migrate", "cache/migrate")
            if cached
            else None,
            note="" if cached else "not measured: this freshdb has no template_cache setting",
        )
    )
    return figures
