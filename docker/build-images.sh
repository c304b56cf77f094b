#!/usr/bin/env bash
# Build local stand-ins for the official postgres, mariadb and mysql images from
# Debian packages, for machines that reach Debian's package mirror but no image
# registry. Idempotent: an image built from the current recipe (its directory here and
# its build arguments) is left alone; one built from another recipe is rebuilt on its
# Debian base in seconds, the base kept; FORCE=1 rebuilds the base too.
#
#   docker/build-images.sh                 the images `make test` needs by default
#   docker/build-images.sh all             the whole server matrix
#   docker/build-images.sh postgres:18 mysql:9 ...   just these
#
# Each image honours the official image's contract (environment variables,
# arguments, first-start initialisation, declared VOLUME), so freshdb runs the same
# code path against them as against the real images.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { printf 'freshdb setup: %s\n' "$*" >&2; }

REPOSITORY=${FRESHDB_LOCAL_REPOSITORY:-freshdb-local}

# The matrix: kind:version, Debian suite, packages, extra build arguments.
# Postgres 18 moved the official image's VOLUME to /var/lib/postgresql, with a
# version-specific PGDATA below it.
matrix() {
  case "$1" in
    postgres:15) echo "bookworm postgresql-15 PG_MAJOR=15" ;;
    postgres:17) echo "trixie postgresql-17,postgresql-17-pgvector,postgresql-17-postgis-3 PG_MAJOR=17" ;;
    postgres:18) echo "sid postgresql-18,postgresql-18-pgvector PG_MAJOR=18,DATA_VOLUME=/var/lib/postgresql,PGDATA=/var/lib/postgresql/18/docker" ;;
    mariadb:10.11) echo "bookworm mariadb-server,mariadb-client -" ;;
    mariadb:11.8) echo "trixie mariadb-server,mariadb-client -" ;;
    mysql:9) echo "sid mysql-server,mysql-client -" ;;
    *) return 1 ;;
  esac
}
ALL=(postgres:17 mariadb:10.11 postgres:15 postgres:18 mariadb:11.8 mysql:9)
DEFAULT=(postgres:17 mariadb:10.11)

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

# The label naming what an image was built from, so a changed Dockerfile or
# entrypoint rebuilds an image made before the change.
RECIPE_LABEL=io.freshdb.stand-in.recipe
# The label naming the Debian suite and packages a base was made from: a changed
# package list makes the base again (the image's recipe alone would not).
BASE_LABEL=io.freshdb.stand-in.base

recipe() {
  # A digest of the image's directory and its matrix entry (suite, packages, build
  # arguments): what `docker build` turns the base into.
  local kind=$1 entry=$2
  { printf '%s\n' "$entry"; cd "$here/$kind" && find . -type f | LC_ALL=C sort \
      | xargs sha256sum; } | sha256sum | cut -c1-16
}

build() {
  local entry=$1 kind=${1%%:*} version=${1##*:}
  local suite packages args
  read -r suite packages args < <(matrix "$entry") || { log "unknown image: $entry"; exit 2; }
  local image="$REPOSITORY/$kind:$version" base="$REPOSITORY/$kind-base:$version"
  local wanted built
  wanted=$(recipe "$kind" "$suite $packages $args")
  built=$(docker image inspect -f "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$image" \
          2>/dev/null || true)
  if [ "${FORCE:-0}" != "1" ] && [ "$built" = "$wanted" ]; then
    log "image $image is present"
    return 0
  fi
  local base_wanted base_built
  base_wanted=$(printf '%s\n' "$suite $packages" | sha256sum | cut -c1-16)
  base_built=$(docker image inspect -f "{{ index .Config.Labels \"$BASE_LABEL\" }}" "$base" \
               2>/dev/null || echo missing)
  if [ -z "$base_built" ]; then
    # Made before bases were labelled: kept (making it again takes minutes).
    log "$base predates its package label; FORCE=1 makes it again from Debian"
  elif [ "$base_built" != "$base_wanted" ] && [ "$base_built" != missing ]; then
    log "$base was made from other packages; making it again"
  fi
  if [ "${FORCE:-0}" = "1" ] || [ "$base_built" = missing ] \
      || { [ -n "$base_built" ] && [ "$base_built" != "$base_wanted" ]; }; then
    command -v debootstrap >/dev/null 2>&1 || {
      log "debootstrap is needed to build $image (apt-get install debootstrap)"; exit 1; }
    local rootfs
    rootfs=$(mktemp -d /tmp/freshdb-rootfs-XXXXXX)
    log "building $base from Debian $suite ($packages); this takes about a minute"
    # mysql-server's maintainer script initialises a datadir while installing, which
    # can fail on a busy machine: one more try from scratch before giving up.
    local try
    for try in 1 2; do
      if debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$(mirror)" \
        >"$rootfs.log" 2>&1; then
        break
      fi
      if [ "$try" = 2 ]; then
        tail -n 30 "$rootfs.log" >&2; rm -rf "$rootfs" "$rootfs.log"; exit 1
      fi
      log "debootstrap of $base failed; trying once more"
      rm -rf "$rootfs"; mkdir -p "$rootfs"
    done
    # Keep the image small: package caches and docs are not needed.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
    tar -C "$rootfs" -c . | docker import --change "LABEL $BASE_LABEL=$base_wanted" - "$base" \
      >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
  fi
  local build_args=(--build-arg "BASE=$base" --label "$RECIPE_LABEL=$wanted")
  if [ "$args" != "-" ]; then
    local IFS=,
    for arg in $args; do build_args+=(--build-arg "$arg"); done
    unset IFS
  fi
  log "building $image"
  docker build -q "${build_args[@]}" -t "$image" "$here/$kind" >/dev/null
  log "image $image is ready"
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=("${DEFAULT[@]}")
elif [ "${targets[0]}" = "all" ]; then
  targets=("${ALL[@]}")
fi
for target in "${targets[@]}"; do
  build "$target"
done
