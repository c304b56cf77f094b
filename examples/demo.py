"""freshdb's main job, end to end (``make demo``).

1. Start (or reuse) the sticky Postgres server and build (or reuse) the template of
   the bookshop example's models, timing it.
2. Hand out fresh copies from the pool, timing acquire + first query + release.
3. Run the bookshop example's test suite on freshdb's pytest plugin, with per-test
   timings and the pool's figures.

Run it twice: the second run reuses the server and the template and starts visibly
faster. ``freshdb down`` removes the sticky server afterwards.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent / "sync_app"


def main() -> int:
    started = time.perf_counter()
    sys.path.insert(0, str(EXAMPLE))
    import freshdb
    from bookshop.models import Base

    server = freshdb.DatabaseServer("postgres", schema=Base.metadata, mode="sticky")
    print(f"freshdb {freshdb.__version__}: starting or reusing the sticky Postgres server ...")
    with server:
        ready = time.perf_counter() - started
        running = server.running
        assert running is not None
        print(f"  server:   {running.container_name} ({'reused' if running.reused else 'started'})")
        print(f"  url:      {server.url.render_as_string(hide_password=True)}")
        template = "reused" if server.stats()["template_reused"] else "built"
        print(f"  template: {server.template} ({template})")
        print(f"  first usable server and template after {ready:.2f} s (import included)")

        # Let the pool fill, then time what a test pays for its database.
        deadline = time.monotonic() + 10
        while server.stats()["ready"] < server.settings.pool_size and time.monotonic() < deadline:
            time.sleep(0.01)
        acquire_ms, total_ms = [], []
        for _ in range(30):
            t0 = time.perf_counter()
            with server.database() as db:
                t1 = time.perf_counter()
                with db.engine().connect() as conn:
                    conn.exec_driver_sql("SELECT count(*) FROM books").scalar()
            acquire_ms.append((t1 - t0) * 1000)
            total_ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)  # a test's own work, during which the pool refills
        print("\n30 fresh databases, one after another:")
        print(f"  acquire from the pool: median {statistics.median(acquire_ms):.3f} ms")
        print(
            "  acquire + connect + first query + release: median "
            f"{statistics.median(total_ms):.1f} ms"
        )
        stats = server.stats()
        print(
            f"  pool: {stats['ready']} ready, {stats['busy']} busy, {stats['clones']} clones made, "
            f"{stats['waits']} waits"
        )

    print("\nThe bookshop example's test suite on freshdb's pytest plugin:\n", flush=True)
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "--durations=5", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        env={**os.environ, "FRESHDB_MODE": "sticky"},
        check=False,
    )
    elapsed = time.perf_counter() - started
    print(
        f"\nDone in {elapsed:.1f} s. Run `make demo` again: the server and the template are "
        "reused. `freshdb status` shows them; `freshdb down` removes the server."
    )
    return suite.returncode


if __name__ == "__main__":
    raise SystemExit(main())
