#!/usr/bin/env bash
# Creates the project-local virtual environment (.venv) and installs the pinned CPU stack into it.
#
# Idempotent: it reinstalls only when requirements/*.txt or pyproject.toml changed (a stamp file in the
# venv records their hash). Everything is installed with --no-deps from fully pinned files, so pip never
# resolves sglang's GPU dependency tree (GBs of CUDA kernels that cannot run on a CPU machine).
# Override the location with SPECRL_VENV=/path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SPECRL_VENV:-$root/.venv}"
stamp="$venv/.specrl-stamp"
want="$(cat "$root"/requirements/*.txt "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py="$cand"; break
    fi
  done
fi
[ -n "$py" ] || { echo "bootstrap: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
echo "bootstrap: installing the pinned CPU stack into $venv (first run: a few minutes, ~7 GB)" >&2
"$py" -m venv "$venv"
pip_install() {
  # pip's exit status is kept; only the machine's harmless "Location ... is ignored" lines are filtered.
  set +e
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$@" 2>&1 \
    | { grep -v "is ignored: it is neither" >&2; true; }
  local rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}
# cpu-lock.txt: the SGLang CPU stack; openrlhf-lock.txt: OpenRLHF + Ray + DeepSpeed for integrations/;
# cpu-nodeps.txt: packages whose own dependency pins would drag in CUDA builds or conflict.
for req in cpu-lock.txt openrlhf-lock.txt cpu-nodeps.txt; do
  if [ -f "$root/requirements/$req" ]; then pip_install -r "$root/requirements/$req"; fi
done
pip_install --no-build-isolation -e "$root"
if ! check="$("$venv/bin/python" -c "import torch, torchvision, sglang, radix_cache, specrl_sglang, ray, deepspeed, openrlhf.trainer.ray" 2>&1)"; then
  echo "$check" >&2
  echo "bootstrap: the installed stack does not import (see above)" >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "bootstrap: ready ($venv)" >&2
