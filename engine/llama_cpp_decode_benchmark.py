#!/usr/bin/env python3
"""llama.cpp's CPU decode throughput on a GGUF, for engine/cpu_engine_benchmark to print beside
apex4's: CONCURRENCY sequences each prefill the same PROMPT_TOKENS tokens (ids from argv),
then decode DECODE_TOKENS tokens greedily, all sequences in one llama_decode batch per step.

Usage: llama_cpp_decode_benchmark.py MODEL.gguf THREADS DECODE_TOKENS CONCURRENCY TOKEN_ID...
Prints one line: "<concurrency> <decode seconds> <decoded tokens>" (llama.cpp logs to stderr).
"""
import sys
import time

import llama_cpp as L
import numpy as np


def main(model_path, threads, decode_tokens, concurrency, prompt):
    L.llama_backend_init()
    model = L.llama_model_load_from_file(model_path.encode(), L.llama_model_default_params())
    params = L.llama_context_default_params()
    params.n_seq_max = concurrency
    params.n_ctx = concurrency * (len(prompt) + decode_tokens + 16)
    params.n_batch = max(512, concurrency * len(prompt))
    params.n_threads = threads
    params.n_threads_batch = threads
    ctx = L.llama_init_from_model(model, params)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    batch = L.llama_batch_init(params.n_batch, 0, concurrency)

    def decode(entries):
        """entries: (sequence, position, token); returns the next greedy token of each."""
        batch.n_tokens = len(entries)
        for i, (seq, pos, token) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        return [int(np.argmax(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), (n_vocab,))))
                for i in range(len(entries))]

    last = []
    for seq in range(concurrency):
        last.append(decode([(seq, p, t) for p, t in enumerate(prompt)])[-1])
    start = time.perf_counter()
    for step in range(decode_tokens):
        last = decode([(seq, len(prompt) + step, last[seq]) for seq in range(concurrency)])
    seconds = time.perf_counter() - start
    print(concurrency, seconds, concurrency * decode_tokens)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
         [int(t) for t in sys.argv[5:]])
