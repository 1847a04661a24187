#!/usr/bin/env python3
"""Reference distributions for engine/sampler_test, computed with numpy from real logits.

llama.cpp (llama-cpp-python) runs the default model on a prompt; its next-token logits are the
input. For each sampler setting the expected probability of every token of a 256-token slice
(the 256 highest logits, in vocabulary order) follows the Hugging Face definition: softmax of
logits / temperature, keep the top_k largest, then the smallest most-likely set whose mass
reaches top_p, renormalised.

Usage: sampler_reference.py MODEL.gguf OUT.json
"""
import json
import sys

import numpy as np
import llama_cpp

PROMPT = b"My favourite thing to do on a rainy day is"
SETTINGS = [
    {"temperature": 1.0, "top_k": 0, "top_p": 1.0},
    {"temperature": 0.7, "top_k": 0, "top_p": 1.0},
    {"temperature": 1.5, "top_k": 10, "top_p": 1.0},
    {"temperature": 1.0, "top_k": 0, "top_p": 0.8},
    {"temperature": 1.2, "top_k": 40, "top_p": 0.9},
]


def expected_probabilities(logits, temperature, top_k, top_p):
    scaled = logits.astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    keep = np.zeros(len(probs), dtype=bool)
    keep[order[:top_k] if top_k > 0 else order] = True
    probs = np.where(keep, probs, 0.0)
    probs /= probs.sum()
    mass_before = np.cumsum(probs[order]) - probs[order]
    nucleus = order[(mass_before < top_p) & keep[order]]
    kept = np.zeros(len(probs), dtype=bool)
    kept[nucleus] = True
    probs = np.where(kept, probs, 0.0)
    return probs / probs.sum()


def main():
    model_path, out_path = sys.argv[1:3]
    llama = llama_cpp.Llama(model_path, n_ctx=64, logits_all=True, verbose=False)
    tokens = llama.tokenize(PROMPT, add_bos=True, special=False)
    llama.eval(tokens)
    logits = np.array(llama.scores[llama.n_tokens - 1], dtype=np.float32)
    top = np.sort(np.argsort(-logits, kind="stable")[:256])
    sliced = logits[top]
    reference = {
        "prompt": PROMPT.decode(),
        "logits": logits.tolist(),
        "argmax": int(np.argmax(logits)),
        "slice_ids": top.tolist(),
        "settings": [dict(s, expected=expected_probabilities(sliced, **s).tolist())
                     for s in SETTINGS],
        # Over the whole vocabulary: the tokens temperature 1, top_p 0.8 may draw.
        "full_vocabulary_nucleus": np.flatnonzero(
            expected_probabilities(logits, 1.0, 0, 0.8)).tolist(),
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(reference, f)


if __name__ == "__main__":
    main()
