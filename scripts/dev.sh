#!/usr/bin/env bash
# Set up the project's virtual environment (idempotent), then run one of its jobs.
#   bash scripts/dev.sh study [ARGS...]   the study (python -m harness.study ARGS; --size cpu: v1..ESRGAN x 3 seeds
#                                         on the local embedded Ray), ending in an HTML report
#   bash scripts/dev.sh sweep [ARGS...]   a sweep (python -m harness.sweep ARGS)
#   bash scripts/dev.sh test  [ARGS...]   the whole test suite (ENHANCE_TEST_WORKERS=N: on N pytest-xdist workers;
#                                         also installs Debian's Chromium for the report tests)
#   bash scripts/dev.sh setup             only the environment
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV (first run: installs torch, Ray, pyiqa ... takes about 5 minutes)"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ]; then
  echo "==> installing enhance-this and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch/torchvision are pinned exactly in pyproject.toml (2.14.1 / 0.29.1)
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

job=${1:-}
[ $# -gt 0 ] && shift
case "$job" in
  setup) ;;
  study)
    exec "$VENV/bin/python" -m harness.study "$@" ;;
  sweep)
    exec "$VENV/bin/python" -m harness.sweep "$@" ;;
  test)
    bash scripts/install_chromium.sh
    # one process by default: the real runs (Ray, training, the browser) share one tiny study and one Ray per session
    # and run one after another. ENHANCE_TEST_WORKERS=N runs N workers (--dist loadscope; tests/conftest.py's
    # scheduler keeps every module with a slow test on one worker, the unit tests beside it); -n/--numprocesses or
    # -p no:xdist take precedence
    workers=${ENHANCE_TEST_WORKERS:-1}
    parallel=()
    if [ "$workers" -gt 1 ] && [[ " $* " != *" -n "* && " $* " != *"--numprocesses"* && " $* " != *"no:xdist"* ]]; then
      parallel=(-n "$workers" --dist loadscope)
    fi
    set +e
    "$VENV/bin/python" -m pytest "${parallel[@]}" "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then
      echo "error: pytest collected no tests" >&2
      exit 1
    fi
    exit "$rc" ;;
  *)
    echo "usage: bash scripts/dev.sh {study|sweep|test|setup} [ARGS...]" >&2
    exit 2 ;;
esac
