#!/usr/bin/env python3
"""Reference logits for engine/llama_model_test from llama.cpp (llama-cpp-python).

For each fixed prompt, llama.cpp tokenizes the text (so the check does not depend on apex4's
tokenizer), evaluates it with logits for every position, then decodes greedily for
GREEDY_STEPS tokens. Writes into OUT_DIR:
  reference.json  per prompt: token ids, greedy continuation ids, and the row offsets of its
                  logits in logits.f32
  logits.f32      float32 rows of vocab_size logits: every prompt position, then the logits
                  that chose each greedy token

Usage: llama_cpp_logits.py MODEL.gguf DATA_DIR OUT_DIR
"""
import json
import os
import sys

import llama_cpp
import numpy as np

GREEDY_STEPS = 32


def prompts(data_dir):
    with open(os.path.join(data_dir, "moby_dick.txt"), encoding="utf-8") as f:
        moby = f.read()
    start = moby.index("Call me Ishmael")
    return [
        "The capital of France is",
        "<|im_start|>user\nWhat is the largest planet in the solar system?<|im_end|>\n"
        "<|im_start|>assistant\n",
        moby[start:start + 600],
    ]


def main(model_path, data_dir, out_dir):
    # F32 KV cache and no flash attention keep llama.cpp's own rounding to its matmuls.
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=1024, n_batch=1024, n_threads=2,
                          logits_all=True, type_k=llama_cpp.GGML_TYPE_F32,
                          type_v=llama_cpp.GGML_TYPE_F32, flash_attn=False, verbose=False)
    rows = []
    entries = []
    for text in prompts(data_dir):
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(tokens)
        first_row = len(rows)
        rows.extend(np.array(llm.scores[:len(tokens)], dtype=np.float32))
        greedy = []
        for _ in range(GREEDY_STEPS):
            last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            if greedy:
                rows.append(last)
            greedy.append(int(np.argmax(last)))
            llm.eval([greedy[-1]])
        entries.append({"text": text, "tokens": tokens, "greedy": greedy,
                        "first_row": first_row, "rows": len(rows) - first_row})
    os.makedirs(out_dir, exist_ok=True)
    np.stack(rows).astype("<f4").tofile(os.path.join(out_dir, "logits.f32"))
    with open(os.path.join(out_dir, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"vocab_size": llm.n_vocab(), "llama_cpp_version": llama_cpp.__version__,
                   "prompts": entries}, f)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
