#!/usr/bin/env bash
# Make sure a Docker engine answers. Idempotent: does nothing when one already does.
#
# On Debian as root it installs Debian's docker.io (and debootstrap, which
# build-images.sh needs) and starts dockerd in the background. Anywhere else it
# stops with a message saying what to install.
set -euo pipefail

log() { printf 'freshdb setup: %s\n' "$*" >&2; }

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then
  PATH="/usr/bin:$PATH"
fi

if command -v docker >/dev/null 2>&1 && engine_answers; then
  exit 0
fi

if [ "$(id -u)" != "0" ] || [ ! -f /etc/debian_version ]; then
  log "no Docker engine answers, and this is not Debian as root, so it cannot be started here."
  log "Install and start Docker (Docker Desktop, colima, OrbStack, podman or Docker Engine),"
  log "or point DOCKER_HOST at a running engine, then run this again."
  exit 1
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A dockerd killed earlier can linger as a zombie with its pid file left behind;
# a new dockerd then refuses to start ("pid file found").
pidfile=/var/run/docker.pid
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile" 2>/dev/null || true)
  state=""
  if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [ "$comm" = "dockerd" ] || state="gone"
  fi
  if [ -z "$state" ] || [ "$state" = "Z" ] || [ "$state" = "gone" ]; then
    log "removing stale $pidfile (pid ${pid:-?} is not a live dockerd)"
    rm -f "$pidfile"
  fi
fi

if ! pgrep -x dockerd >/dev/null 2>&1 || [ ! -f "$pidfile" ]; then
  log "starting dockerd in the background (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
  if engine_answers; then
    log "Docker engine $(docker version --format '{{.Server.Version}}') is up"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 30 s; last lines of /var/log/dockerd.log:"
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
