#!/usr/bin/env bash
# Creates (once) and prints the project's virtualenv. Every package is pinned by requirements.lock
# (`make lock` re-resolves it). The env is cached under a key made of the dependency files, the lock
# and the llama.cpp build flags, so CI and later sessions on the same machine reuse it; a change
# makes a new one. It is marked complete only after the set-up check (visit_assets/setup_check.py)
# has loaded and exercised every native component in a subprocess.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/install_env.sh"
key=$( (cat "$top/pyproject.toml" "$top/requirements.lock" "$top/scripts/env.sh" "$top/scripts/install_env.sh";
        echo "$LLAMA_CMAKE_ARGS"; python3 -VV) | sha256sum | cut -c1-16)
venv=${VISIT_ASSETS_VENV:-$HOME/.cache/visit-assets/venv-$key}
point_here() {  # an env made from another checkout: point its editable install here (cheap, no deps)
  [ "$("$venv/bin/python" -c 'import visit_assets as v; print(v.__file__)' 2>/dev/null)" \
    = "$top/visit_assets/__init__.py" ] && return 0
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$top" >/dev/null 2>&1 \
    || "$venv/bin/pip" install --no-deps -e "$top" >&2
}
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9  # two `make` commands at once on a fresh machine: the second waits for the first's set-up
if [ ! -f "$venv/.complete" ]; then
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    echo "set-up: $venv exists and is not a virtualenv; not touching it (choose another VISIT_ASSETS_VENV)" >&2
    exit 1
  fi
  if [ ! -f "$venv/.installed" ]; then
    echo "setting up $venv (~10 min where llama.cpp was never compiled here, ~3 min where it was; log: $venv.log)" >&2
    rm -rf "$venv"  # an unfinished earlier attempt
    install_env "$venv" "$top/requirements.lock"
    touch "$venv/.installed"
  fi
  # Installed but not checked (or the check failed before): check again, without reinstalling.
  point_here
  t0=$SECONDS
  if ! "$venv/bin/python" -m visit_assets.setup_check >>"$venv.log" 2>&1; then
    sed -n '/^set-up check:/,$p' "$venv.log" | tail -20 >&2
    echo "set-up FAILED: $venv is not marked complete (full log: $venv.log)" >&2
    exit 1
  fi
  echo "[set-up] $((SECONDS - t0)) s: set-up check" >>"$venv.log"
  touch "$venv/.complete"
else
  point_here
fi
ln -sfn "$venv" "$top/.venv"
echo "$venv"
