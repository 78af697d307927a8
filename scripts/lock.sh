#!/usr/bin/env bash
# Re-resolves every dependency (pyproject.toml's ranges) in a scratch environment and writes the
# full transitive set, exact versions, to requirements.lock: `make lock`. Commit the result; the
# next `make sample` / `make test` builds a new environment from it (the lock is in its key).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/install_env.sh"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "resolving in $scratch/venv (~10 min: llama-cpp-python compiles)" >&2
install_env "$scratch/venv"
{
  echo "# Every package of the environment, pinned: written by scripts/lock.sh (make lock) on $(date -u +%F)."
  echo "# scripts/env.sh installs with this as a pip constraints file; edit pyproject.toml, then re-lock."
  "$scratch/venv/bin/pip" freeze --all --exclude-editable | sort -f
} >"$top/requirements.lock.new"
mv "$top/requirements.lock.new" "$top/requirements.lock"
echo "wrote $top/requirements.lock ($(grep -vc '^#' "$top/requirements.lock") packages)" >&2
