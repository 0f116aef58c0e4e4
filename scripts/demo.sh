#!/usr/bin/env bash
# The main job: install the pinned stack on first use, then run the embedded RL demo on CPU.
# Extra arguments go to `specrl-sglang demo` (see --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
exec "${SPECRL_VENV:-$root/.venv}/bin/specrl-sglang" demo "$@"
