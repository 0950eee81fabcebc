# Shared set-up for scripts/run and scripts/test: create .venv and install the project (idempotent).
# Sourced, not executed. Re-installs only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed ($PY is $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv ..."
  "$PY" -m venv .venv
elif ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  # a first set-up cut short between the interpreter and pip (or a Python upgrade that left
  # the link dangling): made again, or every later run ends in "No module named pip"
  echo "remaking .venv (it has no working pip: an earlier set-up was cut short) ..."
  "$PY" -m venv --clear .venv
fi
STAMP=.venv/.credledger-installed
# constraints.txt pins every dependency to the versions the suite last passed with (ADR 53):
# a new release of one (pytest runs with warnings as errors) cannot break a clean checkout.
# CREDLEDGER_UNPINNED=1 installs the newest releases pyproject.toml allows (then scripts/lock).
PIN=(-c constraints.txt)
if [ "${CREDLEDGER_UNPINNED:-0}" = 1 ]; then PIN=(--upgrade --upgrade-strategy eager); fi
WANT="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)-${EXTRAS:-test,dev}-${PIN[0]}"
HAVE="$(cat "$STAMP" 2>/dev/null || true)"
# -unpinned: another Python than the pins', installed unpinned (below); not tried again until
# pyproject.toml or constraints.txt changes
if [ "$HAVE" != "$WANT" ] && [ "$HAVE" != "$WANT-unpinned" ]; then
  echo "installing the project and its ${EXTRAS:-test,dev} extras into .venv ..."
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
  if ! .venv/bin/python -m pip install --quiet "${PIN[@]}" -e ".[${EXTRAS:-test,dev}]"; then
    # Only another Python version than the pins were made with (a pinned release may have no
    # wheel for it) falls back to the newest releases; anything else (a network failure, a
    # pyproject.toml bound above a pin: run scripts/lock) is a failure, and so is any in CI.
    pinned="$(sed -n 's/^# Python \([0-9]*\.[0-9]*\).*/\1/p' constraints.txt)"
    mine="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "${PIN[0]}" != "-c" ] || [ -n "${CI:-}" ] || [ "$pinned" = "$mine" ]; then exit 1; fi
    echo "warning: the pinned versions (constraints.txt, Python $pinned) did not install with" \
         "Python $mine; installing the newest releases pyproject.toml allows instead" >&2
    .venv/bin/python -m pip install --quiet -e ".[${EXTRAS:-test,dev}]"
    WANT="$WANT-unpinned"
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
