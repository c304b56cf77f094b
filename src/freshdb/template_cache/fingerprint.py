"""The template fingerprint, before any server runs: ``freshdb fingerprint``'s answer.

A CI service keys its cache of ``DIR`` by this fingerprint. The image's tag tells the
server version when it names one (no server is started); otherwise the configured
server is started and asked, as a session would.
"""

from __future__ import annotations

from freshdb.config import Settings
from freshdb.dialects import dialect_for, versions
from freshdb.migrators import Migrator
from freshdb.template import TemplateBuilder, TemplateFingerprint


def server_version_from_image(engine: str, image: str) -> str | None:
    """The server version (as a fingerprint names it) an image's tag states, or None.

    ``postgres:17`` → ``"postgres 17"``; ``mariadb:10.11`` → ``"mariadb 10.11"``;
    ``mysql:9`` or ``postgres:latest`` say too little: None.
    """
    flavour = versions.image_flavour(image)
    if flavour is None or flavour not in versions.ENGINE_FLAVOURS.get(engine, ()):
        return None
    version = versions.image_version(image)
    if flavour == "postgres":
        # Postgres 10 and later: the first number is the major release.
        if version[0] == versions.NEWEST[0] or version[0] < 10:
            return None
        return f"postgres {version[0]}"
    if len(version) < 2 or versions.NEWEST[0] in version[:2]:
        return None
    return f"{flavour} {version[0]}.{version[1]}"


def predicted_fingerprint(settings: Settings, migrator: Migrator) -> TemplateFingerprint | None:
    """The template fingerprint for these settings, from the image's tag alone.

    None where the tag does not tell the server version (or the server is external):
    then only the server can say (see :func:`template_fingerprint`).
    """
    if settings.mode == "external":
        return None
    dialect = dialect_for(settings.engine)
    image = settings.image or dialect.default_image(settings.engine)
    server_version = server_version_from_image(settings.engine, image)
    if server_version is None:
        return None
    return TemplateFingerprint(dialect.family, server_version, migrator.fingerprint())


def template_fingerprint(
    settings: Settings, migrator: Migrator
) -> tuple[TemplateFingerprint, bool]:
    """The template fingerprint for these settings, and whether the server was asked.

    From the image's tag when it names the server version (no server is started);
    otherwise the configured server is started (or reached) and asked, as a session
    would, and let go of again (a throwaway one is removed).
    """
    predicted = predicted_fingerprint(settings, migrator)
    if predicted is not None:
        return predicted, False
    from freshdb.backends import backend_for
    from freshdb.cleanup import superseded_retirer

    dialect = dialect_for(settings.engine)
    backend = backend_for(settings, dialect, retire_superseded=superseded_retirer(settings))
    running = backend.start()
    try:
        conn = dialect.connect(running.address)
        try:
            builder = TemplateBuilder(dialect, running.address, settings.prefix, owner="")
            return builder.fingerprint(conn, migrator), True
        finally:
            conn.close()
    finally:
        backend.stop()


__all__ = ["predicted_fingerprint", "server_version_from_image", "template_fingerprint"]
