#!/usr/bin/env bash
# A Docker engine and the local base images for the container tests (tests/smoke).
#
#   docker/local/engine.sh up     install docker.io and debootstrap when missing (Debian, as root
#                                 or with sudo), start dockerd when no engine answers, build the
#                                 local base images when missing
#   docker/local/engine.sh down   stop the dockerd that `up` started (its PID), nothing else
#
# Docker Hub is not reachable on every machine, so the bases that docker/Dockerfile and
# docker/compose.yaml name (python, redis, postgres) have local stand-ins built from Debian's own
# packages: debootstrap makes a bookworm root file system, `docker import` makes it an image,
# and docker/local/*.Dockerfile add Debian's python3, redis-server and postgresql. They are
# built once and kept by the engine (/var/lib/docker) between runs.
#
# When Docker cannot be had, `up` says why in var/docker/unavailable and exits 0: the tests then
# skip with that reason (tests/smoke/engine.py). It never fails the build by itself.
set -uo pipefail
cd "$(dirname "$0")/../.."
STATE=var/docker
PIDFILE=$STATE/dockerd.pid          # written only when we started dockerd
UNAVAILABLE=$STATE/unavailable
LOG=$STATE/dockerd.log
DOCKERD_PID=/var/run/docker.pid
export DOCKER_BUILDKIT=0            # the engine's own builder: no buildx plugin needed
# The images the tests build on (tests/smoke/engine.py reads the same names).
DEBIAN_IMAGE=jobengine-local/debian:bookworm
BASES=(python redis postgres)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { echo "docker/local: $*"; }

give_up() {
  mkdir -p "$STATE" && echo "$*" >"$UNAVAILABLE"
  say "no Docker for the container tests: $*"
  exit 0
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else return 1
  fi
}

engine_answers() { timeout 20 docker info >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  # compose for the fleet test: Debian's docker-compose when no compose plugin answers
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
    || missing+=(docker-compose)
  [ ${#missing[@]} = 0 ] && return 0
  command -v apt-get >/dev/null || give_up "no apt-get to install ${missing[*]}"
  as_root true || give_up "installing ${missing[*]} needs root or sudo"
  say "installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq >/dev/null \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null 2>&1 \
    || give_up "apt-get install ${missing[*]} failed"
}

start_engine() {
  engine_answers && return 0
  command -v dockerd >/dev/null || give_up "no dockerd"
  as_root true || give_up "no Docker engine answers and starting dockerd needs root"
  mkdir -p "$STATE"
  say "starting dockerd (log: $LOG)"
  # setsid: its own session, so a Ctrl-C of make does not reach it; `down` stops it by PID.
  as_root setsid dockerd --pidfile="$DOCKERD_PID" >"$LOG" 2>&1 </dev/null &
  local launcher=$!
  for _ in $(seq 60); do
    if engine_answers; then
      cp "$DOCKERD_PID" "$PIDFILE"  # dockerd's own record of its PID
      return 0
    fi
    kill -0 "$launcher" 2>/dev/null || break
    sleep 1
  done
  give_up "dockerd did not answer within 60 s: $(tail -n 3 "$LOG" | tr '\n' ' ')"
}

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

build_debian() {
  has_image "$DEBIAN_IMAGE" && return 0
  local root rc
  root=$(mktemp -d /tmp/jobengine-debootstrap.XXXXXX)
  say "debootstrap bookworm -> $DEBIAN_IMAGE"
  if ! as_root debootstrap --variant=minbase bookworm "$root" "$MIRROR" \
      >"$STATE/debootstrap.log" 2>&1; then
    as_root rm -rf "$root"
    give_up "debootstrap failed: $(tail -n 3 "$STATE/debootstrap.log" | tr '\n' ' ')"
  fi
  # Updates as in the public images; no downloaded packages or lists in the image.
  printf '%s\n' "deb $MIRROR bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" \
    | as_root tee -a "$root/etc/apt/sources.list" >/dev/null
  as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  as_root tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rc=$?
  as_root rm -rf "$root"
  [ $rc = 0 ] || give_up "docker import of the bookworm root file system failed"
}

build_bases() {
  build_debian
  # The build context: these files and the machine's CA bundle, which the python base trusts so
  # that pip reaches PyPI through whatever TLS inspection this machine's network does.
  local context base
  context=$(mktemp -d /tmp/jobengine-bases.XXXXXX)
  cp docker/local/* "$context/"
  cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$context/host-ca-certificates.crt" \
    2>/dev/null || : >"$context/host-ca-certificates.crt"
  for base in "${BASES[@]}"; do
    # Cached by the engine's layer cache: a no-op after the first build.
    if ! docker build --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "jobengine-local/$base" \
        -f "$context/$base.Dockerfile" "$context" >"$STATE/build-$base.log" 2>&1; then
      rm -rf "$context"
      give_up "building jobengine-local/$base failed: see $STATE/build-$base.log"
    fi
  done
  rm -rf "$context"
}

up() {
  mkdir -p "$STATE"
  rm -f "$UNAVAILABLE"
  install_packages
  start_engine
  build_bases
  say "engine ready; bases $DEBIAN_IMAGE ${BASES[*]/#/jobengine-local/}"
}

down() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid=$(cat "$PIDFILE")
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    say "stopping the dockerd we started (PID $pid)"
    as_root kill -TERM "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
