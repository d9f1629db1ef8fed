#!/usr/bin/env bash
# A private Docker engine for the reproduce tests (tests/test_reproduce_docker.py).
#
#   eval "$(bash .ci/docker-engine.sh start)"   # installs docker.io + debootstrap if absent, starts
#                                               # dockerd under a temp dir, builds/loads the runner
#                                               # image, prints `export DOCKER_HOST=...`
#   bash .ci/docker-engine.sh stop              # stops dockerd, removes its state
#
# Never fails the CI run: when no engine can be started it exports NBATLAS_DOCKER_UNAVAILABLE (or
# NBATLAS_RUNNER_UNAVAILABLE when only the image build failed) and the docker tests skip, naming
# the reason. Images are kept in /var/cache/nbatlas-ci/docker-data (the engine's data root; exec root,
# socket and pid file stay in the temp state dir), and the runner image's ingredients (debootstrap
# tarball, wheels, a `docker save`) in /var/cache/nbatlas-ci/runner: a rerun on the same machine
# finds the image ready instead of running debootstrap again.
# Python: $NBATLAS_PYTHON, else .venv/bin/python, creating .venv with nbatlas installed the way the
# README's test command does (which then finds it ready).
set -uo pipefail

cmd="${1:-start}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${NBATLAS_DOCKER_STATE:-/tmp/nbatlas-ci-docker}"
py="${NBATLAS_PYTHON:-}"

log() { echo "docker-engine: $*" >&2; }

case "$cmd" in
start)
  if [ "$(id -u)" != 0 ]; then
    echo "export NBATLAS_DOCKER_UNAVAILABLE='not root: cannot install or start dockerd'"
    exit 0
  fi
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    log "installing docker.io and debootstrap from Debian's packages"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap; } >&2; then
      echo "export NBATLAS_DOCKER_UNAVAILABLE='apt-get install docker.io debootstrap failed'"
      exit 0
    fi
  fi
  mkdir -p /var/cache/nbatlas-ci 2>/dev/null || true
  if [ -z "$py" ]; then
    py="$here/.venv/bin/python"
    if ! "$py" -c "import ingest.reproduce.runner_image" >/dev/null 2>&1; then
      log "creating .venv with nbatlas (needed to build the runner image)"
      if ! { python3 -m venv "$here/.venv" && "$here/.venv/bin/pip" install -q -e "$here[dev]"; } >&2; then
        echo "export NBATLAS_DOCKER_UNAVAILABLE='could not install nbatlas in .venv to start the engine'"
        exit 0
      fi
    fi
  fi
  started=$SECONDS
  # images live in the cache (tests.docker_engine.default_data_root): a rerun finds the runner image there
  (cd "$here" && "$py" -m tests.docker_engine start --state-dir "$state" --build-image)

  log "engine + runner image ready in $((SECONDS - started))s"
  ;;
stop)
  [ -n "$py" ] || py="$here/.venv/bin/python"
  [ -x "$py" ] || py=python3
  (cd "$here" && "$py" -m tests.docker_engine stop --state-dir "$state") || true
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
