"""How ``freshdb status`` shows a server: its facts, templates and copies as text."""

from __future__ import annotations

import datetime as dt

from freshdb.cleanup.inventory import CopyInfo, ServerStatus, TemplateInfo
from freshdb.config import Settings


def server_text(server: ServerStatus, settings: Settings) -> str:
    """One server as ``freshdb status`` prints it: its facts, templates and copies."""
    facts = [server.engine, server.mode, server.status]
    if server.port is not None:
        facts.append(f"{server.host}:{server.port}" if server.host else f"port {server.port}")
    if server.uptime_seconds is not None:
        facts.append(f"up {_duration(server.uptime_seconds)}")
    if server.memory_bytes is not None:
        facts.append(f"memory {_size(server.memory_bytes)}")
    if server.image:
        facts.append(f"image {server.image}")
    if server.leaked:
        facts.append("LEAKED (owner gone: `freshdb prune` removes it)")
    if server.use:
        facts.append(server.use)
    lines = [f"{server.name}  " + ", ".join(facts)]
    if server.retire_reason:
        then = (
            "`freshdb prune` removes it"
            if server.use == "idle" or server.status != "running"
            else "`freshdb prune` removes it once idle"
        )
        lines.append(f"  no longer wanted ({server.retire_reason}): {then}")
    if server.error:
        lines.append(f"  databases unreadable: {server.error}")
    if server.templates:
        lines.append(
            f"  templates (up to {settings.keep_templates} kept; beyond that, superseded ones "
            f"and ones unused for {settings.template_retention} are pruned; snapshots, under "
            "their template, go with it or once unused as long):"
        )
        rows = [
            ["name", "last used (UTC)", "created (UTC)", "size", "copies", "state", "made from"]
        ]
        for template in server.templates:
            rows += _template_rows(template, depth=0)
        lines += _table(rows, indent=4)
    if server.copies:
        live = sum(1 for c in server.copies if c.live and c.kind == "copy")
        leaked = sum(1 for c in server.copies if c.leaked)
        kept = sum(1 for c in server.copies if c.kind == "kept")
        lines.append(f"  copies: {live} live, {leaked} leaked, {kept} kept:")
        rows = [
            [c.name, f"owner {c.owner}", _copy_state(c), _size(c.size_bytes)] for c in server.copies
        ]
        lines += _table(rows, indent=4)
    elif server.status in ("running", "external") and not server.error:
        lines.append("  no copies")
    return "\n".join(lines)


def _template_rows(template: TemplateInfo, depth: int) -> list[list[str]]:
    """A template's row, then its snapshots' (and theirs), each level indented."""
    name = template.name
    if template.kind == "snapshot":
        name = "  " * (depth - 1) + "└ " + name if depth else name
    state = ("in use" if template.in_use else "unused") + (", stale" if template.stale else "")
    rows = [
        [
            name,
            _moment(template.last_used),
            _moment(template.created),
            _size(template.size_bytes),
            str(template.copies),
            state,
            _made_from(template, shown_under_parent=depth > 0),
        ]
    ]
    for snapshot in template.snapshots:
        rows += _template_rows(snapshot, depth + 1)
    return rows


def _made_from(template: TemplateInfo, shown_under_parent: bool) -> str:
    """A template's migrator; a snapshot's seed and key (and parent, if not shown above)."""
    if template.kind != "snapshot":
        return template.migrator or ""
    parts = [f"snapshot: {template.seed or '?'}"]
    if template.key:
        parts.append(f"key {template.key!r}")
    if not shown_under_parent:
        parts.append(f"of {template.parent or '?'} (not listed: gone or busy)")
    return ", ".join(parts)


def _moment(iso: str) -> str:
    """An ISO 8601 UTC time as ``YYYY-MM-DD HH:MM`` (``?`` if unknown)."""
    try:
        return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "?"


def _copy_state(copy: CopyInfo) -> str:
    """What a copy is, in the words of ``freshdb status``."""
    if copy.kind == "kept":
        return "kept" + ("" if copy.live else " (owner gone)")
    if copy.kind == "build":
        return "building" if copy.live else "leaked build"
    return "live" if copy.live else "leaked"


def _table(rows: list[list[str]], indent: int) -> list[str]:
    """Rows as left-aligned columns, each line indented."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        " " * indent
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _size(size: int | None) -> str:
    """A size in bytes for people (``?`` if unknown)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    """A duration for people: ``3d 4h``, ``2h 05m`` or ``1m 07s``."""
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {int(seconds) % 60:02d}s"
