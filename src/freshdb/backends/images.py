"""Server images: pulled when missing, refused when they plainly run another engine."""

from __future__ import annotations

import logging

import docker.errors
from docker.models.images import Image
from docker.utils import parse_repository_tag

import docker
from freshdb.dialects import versions
from freshdb.errors import DockerUnavailableError, ImageError, UnsupportedServerError, one_line

log = logging.getLogger("freshdb")


def ensure_image(client: docker.DockerClient, image_name: str, engine: str) -> Image:
    """The image ``image_name``, pulled (with progress logged) if it is not present."""
    try:
        return client.images.get(image_name)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as exc:
        raise DockerUnavailableError(f"Docker failed to look up images: {exc}") from exc
    repository, tag = parse_repository_tag(image_name)
    log.info("pulling image %s", image_name)
    variable = f"FRESHDB_{engine.upper()}_IMAGE"
    try:
        last: dict[str, str] = {}
        for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in event:
                raise ImageError(
                    f"cannot pull image {image_name}: {event['error']} — check the "
                    f"name and your registry access, or set FRESHDB_IMAGE / {variable} to "
                    "an image you have"
                )
            layer, status = event.get("id", ""), event.get("status", "")
            if status and last.get(layer) != status:
                last[layer] = status
                log.info("pull %s: %s %s", image_name, layer, status)
        return client.images.get(image_name)
    except docker.errors.DockerException as exc:
        raise ImageError(
            f"cannot pull image {image_name}: {one_line(exc)} — check the name "
            f"and your registry access, or set FRESHDB_IMAGE / {variable} to an image "
            "you have"
        ) from exc


def check_image_port(image: Image, image_name: str, engine: str, port: int) -> None:
    """Refuse an image that declares ports, none of them the engine's server ``port``.

    Catches an image of another engine whose name does not say so (an id, a
    private name) before it is started with settings it cannot understand.
    """
    exposed = sorted((image.attrs.get("Config") or {}).get("ExposedPorts") or {})
    if exposed and f"{port}/tcp" not in exposed:
        raise UnsupportedServerError(
            f"image {image_name!r} exposes {', '.join(exposed)}, not {port}/tcp "
            f"where a {engine} server listens: it runs another engine — "
            f"use the engine it runs, or choose an image with image= or "
            f"FRESHDB_{engine.upper()}_IMAGE / FRESHDB_IMAGE. freshdb "
            f"supports: {versions.supported_servers()}"
        )


__all__ = ["check_image_port", "ensure_image"]
