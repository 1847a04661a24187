"""Perplexity (non-overlapping windows, every token scored as in the W4A4 papers) and HellaSwag
(llama.cpp's 6-line format, length-normalised log-likelihood of each ending)."""
import sys
import time
from dataclasses import dataclass

import numpy as np

from .gguf_loader import QuantizerError
from .model import KvCache, LlamaModel, forward_hidden, logits

LOGIT_CHUNK = 512  # rows of the [T, vocab] logits materialised at once


def _token_logprobs(model: LlamaModel, hidden: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(targets[i] | prefix) from hidden[i], computing the LM head in chunks."""
    out = np.empty(len(targets), dtype=np.float64)
    for s in range(0, len(targets), LOGIT_CHUNK):
        z = logits(model, hidden[s:s + LOGIT_CHUNK]).astype(np.float64)
        z -= z.max(axis=-1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=-1))
        out[s:s + LOGIT_CHUNK] = z[np.arange(len(z)), targets[s:s + LOGIT_CHUNK]] - log_norm
    return out


def perplexity(model: LlamaModel, tokens: np.ndarray, ctx: int, max_windows: int) -> dict:
    windows = min(len(tokens) // ctx, max_windows)
    if windows == 0:
        raise QuantizerError(f"text has {len(tokens)} tokens, fewer than one window of {ctx}")
    start, nll, count = time.time(), 0.0, 0
    for w in range(windows):
        window = tokens[w * ctx:(w + 1) * ctx]
        hidden = forward_hidden(model, window[None])[0]
        nll -= _token_logprobs(model, hidden[:-1], window[1:]).sum()
        count += ctx - 1
        print(f"[perplexity] window {w + 1}/{windows}: {np.exp(nll / count):.3f}",
              file=sys.stderr)
    return {"perplexity": float(np.exp(nll / count)), "windows": windows, "ctx": ctx,
            "tokens_scored": count, "seconds": round(time.time() - start, 1)}


@dataclass
class HellaswagTask:
    context: str
    label: int
    endings: list


def read_hellaswag(path: str, limit: int) -> list:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if len(lines) % 6:
        raise QuantizerError(f"'{path}': {len(lines)} lines, not a multiple of 6 "
                             "(llama.cpp HellaSwag format)")
    tasks = []
    for i in range(0, min(len(lines), 6 * limit), 6):
        tasks.append(HellaswagTask(lines[i], int(lines[i + 1]), lines[i + 2:i + 6]))
    return tasks


def hellaswag(model: LlamaModel, tokenizer, tasks: list) -> dict:
    """Each ending is scored as context + " " + ending (as llama.cpp does); the tokens after the
    prefix shared by all four sequences are averaged. The shared prefix is run once and its KV
    cache reused, which is exact: every quantizer here works per token."""
    start, correct = time.time(), 0
    for index, task in enumerate(tasks):
        seqs = [tokenizer.encode(task.context + " " + e) for e in task.endings]
        common = 0
        while all(len(s) > common + 1 and s[common] == seqs[0][common] for s in seqs):
            common += 1
        if common == 0:
            raise QuantizerError(f"HellaSwag task '{task.context[:40]}': endings share no prefix")
        prefix_cache = KvCache()
        prefix_hidden = forward_hidden(model, seqs[0][None, :common], prefix_cache)[0]
        scores = []
        for seq in seqs:
            hidden = forward_hidden(model, seq[None, common:], prefix_cache.copy())[0]
            # the first scored token is predicted from the prefix's last position
            hidden = np.concatenate([prefix_hidden[-1:], hidden[:-1]])
            scores.append(_token_logprobs(model, hidden, seq[common:]).mean())
        correct += int(np.argmax(scores) == task.label)
        if (index + 1) % 50 == 0:
            print(f"[hellaswag] {index + 1}/{len(tasks)}: {100.0 * correct / (index + 1):.1f}%",
                  file=sys.stderr)
    return {"accuracy": 100.0 * correct / len(tasks), "tasks": len(tasks),
            "seconds": round(time.time() - start, 1)}
