#!/usr/bin/env bash
# Build local stand-ins for the official postgres and mariadb images from Debian
# packages, for machines that reach Debian's package mirror but no image registry.
# Idempotent: an image that already exists is left alone (FORCE=1 rebuilds).
#
#   docker/build-images.sh [postgres] [mariadb]     (default: both)
#
# Each image honours the official image's contract (environment variables,
# arguments, first-start initialisation, declared VOLUME), so freshdb runs the
# same code path against them as against the real images.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { printf 'freshdb setup: %s\n' "$*" >&2; }

POSTGRES_IMAGE=${FRESHDB_LOCAL_POSTGRES_IMAGE:-freshdb-local/postgres:15}
MARIADB_IMAGE=${FRESHDB_LOCAL_MARIADB_IMAGE:-freshdb-local/mariadb:10.11}

mirror() {
  # The mirror this machine is configured with, read from its apt sources.
  local uri
  uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
        | grep -v security | head -n 1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security \
          | awk '{print $2}' | head -n 1 || true)
  fi
  if [ -z "$uri" ]; then
    log "no Debian mirror found in the apt sources; cannot build images"
    exit 1
  fi
  printf '%s' "$uri"
}

build() {
  local kind=$1 image=$2 packages=$3
  if [ "${FORCE:-0}" != "1" ] && docker image inspect "$image" >/dev/null 2>&1; then
    log "image $image is present"
    return 0
  fi
  local base="${image%%:*}-base:${image##*:}"
  if [ "${FORCE:-0}" = "1" ] || ! docker image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null 2>&1 || {
      log "debootstrap is needed to build $image (apt-get install debootstrap)"; exit 1; }
    local rootfs
    rootfs=$(mktemp -d /tmp/freshdb-rootfs-XXXXXX)
    log "building $base with debootstrap ($packages); this takes about a minute"
    debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$(mirror)" \
      >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; rm -rf "$rootfs"; exit 1; }
    # Keep the image small: package caches and docs are not needed.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
    tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
  fi
  log "building $image"
  docker build -q --build-arg "BASE=$base" -t "$image" "$here/$kind" >/dev/null
  log "image $image is ready"
}

kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(postgres mariadb)
for kind in "${kinds[@]}"; do
  case "$kind" in
    postgres) build postgres "$POSTGRES_IMAGE" postgresql-15 ;;
    mariadb) build mariadb "$MARIADB_IMAGE" mariadb-server,mariadb-client ;;
    *) log "unknown image kind: $kind (postgres or mariadb)"; exit 2 ;;
  esac
done
