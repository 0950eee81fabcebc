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
fi
STAMP=.venv/.credledger-installed
# constraints.txt pins every dependency to the versions the suite last passed with (ADR 53):
# a new release of one (pytest runs with warnings as errors) cannot break a clean checkout.
# CREDLEDGER_UNPINNED=1 installs the newest releases pyproject.toml allows (then scripts/lock).
PIN=(-c constraints.txt)
if [ "${CREDLEDGER_UNPINNED:-0}" = 1 ]; then PIN=(); fi
WANT="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)-${EXTRAS:-test,dev}-${#PIN[@]}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "installing the project and its ${EXTRAS:-test,dev} extras into .venv ..."
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
  if ! .venv/bin/python -m pip install --quiet "${PIN[@]}" -e ".[${EXTRAS:-test,dev}]"; then
    [ "${#PIN[@]}" -gt 0 ] || exit 1
    # e.g. another Python version, for which a pinned release has no wheel
    echo "warning: the pinned versions (constraints.txt) did not install with $("$PY" --version);" \
         "installing the newest releases pyproject.toml allows instead" >&2
    .venv/bin/python -m pip install --quiet -e ".[${EXTRAS:-test,dev}]"
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
