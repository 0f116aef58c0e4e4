#!/usr/bin/env bash
# The whole test suite: install the pinned stack on first use, then run pytest on a real CPU SGLang.
# Fails if any test fails, errors, or if no test ran. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
set +e
"${SPECRL_VENV:-$root/.venv}/bin/python" -m pytest tests -q -rfEs -W ignore::UserWarning -W ignore::DeprecationWarning "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
