"""What an installed pytest plugin costs a project that does not use it.

A generated project (one test file, no database fixture anywhere) is collected by
``pytest --collect-only`` in a new process, with every installed plugin loaded and
then with one plugin disabled (``-p no:NAME``); the difference, paired sample by
sample, is what loading that plugin costs every pytest run of a project that has
it installed. Measured for freshdb's plugin and for the peers' plugins installed in
the benchmark's virtualenv (pytest-postgresql, pytest-databases): the same pytest,
the same project, interleaved, so drift on the shared machine hits them alike.

No server is involved: the group needs no Docker.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.context import BenchContext
from benchmarks.report import Comparison, Figure, Target
from benchmarks.stats import Summary

GROUP = "Plugin load cost: pytest --collect-only of a project using no database fixture"
#: The distributions whose pytest plugins are measured, freshdb first; a peer not
#: installed in the benchmark's virtualenv is left out (a note says so).
DISTRIBUTIONS = (
    ("freshdb", "freshdb"),
    ("pytest-postgresql", "pytest-postgresql"),
    ("pytest-databases", "pytest-databases"),
)
#: "Loading it must cost a few milliseconds" (issue 17): freshdb's cost, paired median.
FEW_MILLISECONDS = Target("median", 10.0, "<= 10 ms")

_TESTS = """\
def add(a, b):
    return a + b


def test_add():
    assert add(1, 2) == 3


def test_add_negative():
    assert add(-1, -2) == -3
"""


@dataclasses.dataclass(frozen=True)
class Plugin:
    """One distribution's pytest plugin: its ``-p no:`` name(s)."""

    key: str
    distribution: str
    names: tuple[str, ...]
    #: The modules its ``pytest11`` entry points name (what pytest imports to load it).
    modules: tuple[str, ...] = ()


def installed_plugins() -> tuple[list[Plugin], list[str]]:
    """The measured plugins installed here (their ``pytest11`` entry points), and the
    distributions that are not installed."""
    found: list[Plugin] = []
    missing: list[str] = []
    for key, distribution in DISTRIBUTIONS:
        try:
            entry_points = importlib.metadata.distribution(distribution).entry_points
        except importlib.metadata.PackageNotFoundError:
            missing.append(distribution)
            continue
        plugin_points = sorted(
            (ep for ep in entry_points if ep.group == "pytest11"), key=lambda ep: ep.name
        )
        if plugin_points:
            names = tuple(ep.name for ep in plugin_points)
            modules = tuple(ep.value.split(":")[0] for ep in plugin_points)
            found.append(Plugin(key, distribution, names, modules))
        else:
            missing.append(distribution)
    return found, missing


def write_project(root: Path) -> Path:
    """A project with one test file and its own (empty) pytest configuration."""
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (root / "test_plain.py").write_text(_TESTS)
    return root


def _installed_environment() -> dict[str, str]:
    """The environment of a pytest run in a project that merely has the plugins installed.

    Every ``PYTEST_`` and ``FRESHDB_`` variable out (the plugin must cost nothing
    whatever the user set), and bytecode written and read as an installed package's
    is (pip compiles it at install time): without it every run compiles the plugins'
    sources again, a cost no user pays.
    """
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "FRESHDB_")) and key != "PYTHONDONTWRITEBYTECODE"
    }


def collect_seconds(root: Path, disabled: tuple[str, ...] = ()) -> float:
    """Seconds from spawning ``pytest --collect-only`` in ``root`` to its exit."""
    environment = _installed_environment()
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q"]
    for name in disabled:
        command += ["-p", f"no:{name}"]
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=root, env=environment, capture_output=True, text=True, timeout=120
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0 or "2 tests collected" not in result.stdout:
        raise RuntimeError(
            f"pytest --collect-only {' '.join(command[5:])} failed (exit "
            f"{result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return seconds


#: Run in a new interpreter: pytest is imported first (every run pays it anyway), then
#: the plugin's modules are imported and timed, as pytest does when it loads them.
_IMPORT_TIMER = """\
import importlib, sys, time
import pytest
started = time.perf_counter()
for module in sys.argv[1:]:
    importlib.import_module(module)
print(time.perf_counter() - started)
"""


def import_seconds(modules: tuple[str, ...]) -> float:
    """Seconds a new interpreter that has imported pytest spends importing ``modules``.

    The part of a plugin's load cost that is its own code: precise to a fraction of a
    millisecond, where the paired ``--collect-only`` difference is within the noise
    of a one-second process start.
    """
    environment = _installed_environment()
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_TIMER, *modules],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def run(context: BenchContext) -> list[Figure]:
    """Collect-only wall time with every plugin, without each measured one, and the
    paired differences."""
    samples = context.count(15, 4)
    plugins, missing = installed_plugins()
    with_all: list[float] = []
    without: dict[str, list[float]] = {plugin.key: [] for plugin in plugins}
    imports: dict[str, list[float]] = {plugin.key: [] for plugin in plugins}
    with tempfile.TemporaryDirectory(prefix="freshdb-bench-plugins-") as temporary:
        root = write_project(Path(temporary) / "project")
        collect_seconds(root)  # untimed: bytecode written, the page cache warm
        for plugin in plugins:
            import_seconds(plugin.modules)
        for _ in range(samples):
            with_all.append(collect_seconds(root))
            for plugin in plugins:
                without[plugin.key].append(collect_seconds(root, plugin.names))
                imports[plugin.key].append(import_seconds(plugin.modules) * 1000.0)
    figures = [
        Figure(
            "plugin_load.all",
            GROUP,
            "pytest --collect-only, every installed plugin",
            "s",
            Summary.of(with_all),
            note="not installed in the benchmark's virtualenv, so not measured: "
            + ", ".join(missing)
            if missing
            else "",
        )
    ]
    for plugin in plugins:
        disabled = " ".join(f"-p no:{name}" for name in plugin.names)
        figures.append(
            Figure(
                f"plugin_load.without.{plugin.key}",
                GROUP,
                f"the same, with {disabled}",
                "s",
                Summary.of(without[plugin.key]),
            )
        )
    for plugin in plugins:
        cost = [
            (loaded - unloaded) * 1000.0
            for loaded, unloaded in zip(with_all, without[plugin.key], strict=True)
        ]
        is_freshdb = plugin.key == "freshdb"
        figures.append(
            Figure(
                f"plugin_load.cost.{plugin.key}",
                GROUP,
                f"load cost of {plugin.distribution}'s plugin (paired difference)",
                "ms",
                Summary.of(cost),
                None
                if is_freshdb
                else Comparison("plugin_load.cost.freshdb", f"plugin_load.cost.{plugin.key}"),
                # No target here: a process start's noise (p95 in the hundreds of
                # ms) swamps a few ms; the import row below carries it.
                note="within the noise of a process start: see the import row below"
                if is_freshdb
                else "",
            )
        )
    for plugin in plugins:
        is_freshdb = plugin.key == "freshdb"
        figures.append(
            Figure(
                f"plugin_load.import.{plugin.key}",
                GROUP,
                f"importing {plugin.distribution}'s plugin after pytest "
                f"({', '.join(plugin.modules)})",
                "ms",
                Summary.of(imports[plugin.key]),
                None
                if is_freshdb
                else Comparison("plugin_load.import.freshdb", f"plugin_load.import.{plugin.key}"),
                targets=(FEW_MILLISECONDS,) if is_freshdb else (),
            )
        )
    return figures
