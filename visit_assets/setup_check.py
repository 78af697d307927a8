"""Set-up self-check: every native component is loaded and exercised, each in its own subprocess,
so a crash (SIGSEGV, SIGILL) fails the set-up naming the component, the CPU flags that matter and
the fix, instead of surfacing later, mid-pipeline, as a bare "Segmentation fault".

`python -m visit_assets.setup_check` (run by scripts/env.sh before it marks an environment
complete, and by `visit-assets check-setup`) exits 0 only if every component passed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# CPU flags that decide whether native code runs here (as /proc/cpuinfo names them).
RELEVANT_FLAGS = ("avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8")
# The portable llama.cpp build (scripts/install_env.sh) needs these.
PORTABLE_NEEDS = ("avx", "avx2", "fma", "f16c")
PROMPT_TOKENS_MIN = 200
# Test hook: the named component's child kills itself with SIGSEGV, as a broken build would.
CRASH_ENV = "VISIT_SETUP_CHECK_CRASH"
TIMEOUT_S = 300


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _check_llama_cpp() -> dict:
    import llama_cpp

    from visit_assets.lib.llm.llama_cpp_backend import default_gguf_path

    llm = llama_cpp.Llama(str(default_gguf_path()), n_ctx=1024, n_threads=1, verbose=False)
    # Long prompts are what crashed (a 5-token prompt ran, a 30-token one hit the AMX kernel).
    prompt = " ".join(f"Object {i} is a red ball on the table." for i in range(40))
    tokens = llm.tokenize(prompt.encode())
    assert len(tokens) >= PROMPT_TOKENS_MIN, len(tokens)
    start = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=8, temperature=0.0)
    usage = out["usage"]  # type: ignore[index]  # llama_cpp types the streamed case too; not streamed: a dict
    return {"llama_cpp_python": llama_cpp.__version__, "prompt_tokens": len(tokens),
            "completion_tokens": usage["completion_tokens"], "seconds": round(time.perf_counter() - start, 2),
            "compiled_features": llama_cpp.llama_print_system_info().decode().strip()}


def _check_embedder() -> dict:
    from visit_assets.lib.models.embedder import SentenceEmbedder

    vectors = SentenceEmbedder().encode(["A red bicycle leans on a brick wall."])
    assert vectors.shape[0] == 1 and vectors.shape[1] > 0
    return {"dims": int(vectors.shape[1])}


def _check_torch_open_clip() -> dict:
    import open_clip
    import torch

    x = torch.randn(64, 64)
    assert torch.isfinite(x @ x.T).all()
    return {"torch": torch.__version__, "open_clip": open_clip.__version__}


def _check_ann_clustering() -> dict:
    """faiss picks its SIMD kernels at run time (generic, AVX2, AVX-512): exercise them, and pyamg."""
    import faiss
    import numpy as np
    import pyamg

    from visit_assets.lib.selection.clustering import METHOD_ANN, spectral_clusters

    X = np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)
    _, info = spectral_clusters(X, k=3, method=METHOD_ANN)
    assert info["n_clusters"] == 3 and info["params"]["neighbour_recall"] > 0.5, info
    return {"faiss": faiss.__version__, "compile_options": faiss.get_compile_options().strip(), "pyamg": pyamg.__version__}


CHECKS: dict[str, Callable[[], dict]] = {
    "llama.cpp": _check_llama_cpp,
    "sentence embedder": _check_embedder,
    "torch + open_clip": _check_torch_open_clip,
    "faiss + pyamg (image clustering)": _check_ann_clustering,
}


def _child(name: str) -> int:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGSEGV)
    print(json.dumps(CHECKS[name]()))
    return 0


def _fix(name: str, flags: set[str]) -> str:
    if name != "llama.cpp":
        return "reinstall the environment (delete it and run `make sample` again); if it persists, report it with the log."
    missing = [f for f in PORTABLE_NEEDS if f not in flags]
    if os.environ.get("VISIT_LLAMA_CMAKE_ARGS"):
        return ("VISIT_LLAMA_CMAKE_ARGS asks for a build this CPU cannot run: unset it and run `make sample` again "
                "(a new environment with the portable AVX2 build is made).")
    if missing:
        return (f"this CPU lacks {', '.join(missing)}, which the portable llama.cpp build needs: set "
                "VISIT_LLAMA_CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF' "
                "for a slower build, or use an LLM endpoint (VISIT_LLM_BACKEND=openai).")
    return ("the portable build (AVX2/FMA/F16C) crashed on a CPU that has those: report it with the log; meanwhile "
            "use an LLM endpoint (VISIT_LLM_BACKEND=openai).")


def _describe_failure(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        return f"crashed with {sig} (signal {-proc.returncode})"
    lines = (proc.stderr or "").strip().splitlines()
    return f"failed (exit {proc.returncode}): {lines[-1] if lines else 'no message'}"


def run_all(names: list[str] | None = None) -> tuple[bool, list[str]]:
    """Runs each check in a child process; returns (all passed, report lines)."""
    flags = cpu_flags()
    shown = " ".join(f for f in RELEVANT_FLAGS if f in flags) or "(none found)"
    report, ok = [f"CPU flags that matter here: {shown}"], True
    for name in names or list(CHECKS):
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "visit_assets.setup_check", "--component", name],
                                  capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess([], 1, "", f"no answer in {TIMEOUT_S} s")
        took = time.perf_counter() - start
        if proc.returncode == 0:
            report.append(f"ok    {name} ({took:.1f} s): {proc.stdout.strip().splitlines()[-1]}")
            continue
        ok = False
        report += [f"FAILED {name}: {_describe_failure(proc)}", f"  fix: {_fix(name, flags)}"]
    return ok, report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--component"]:
        return _child(argv[1])
    ok, report = run_all()
    print("\n".join(["set-up check:"] + [f"  {line}" for line in report]), file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
