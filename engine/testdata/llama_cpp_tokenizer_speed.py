#!/usr/bin/env python3
"""Times llama.cpp's tokenizer (llama-cpp-python) on a text file, for tokenizer_benchmark.

Usage: llama_cpp_tokenizer_speed.py MODEL.gguf TEXT_FILE
"""
import sys
import time

import llama_cpp


def main():
    model_path, text_path = sys.argv[1:3]
    llama = llama_cpp.Llama(model_path, vocab_only=True, verbose=False)
    with open(text_path, "rb") as f:
        text = f.read()
    start = time.perf_counter()
    ids = llama.tokenize(text, add_bos=False, special=False)
    seconds = time.perf_counter() - start
    print("llama.cpp encode: %d tokens in %.3f s (%.2f MB/s, %.0f tokens/s)"
          % (len(ids), seconds, len(text) / 1e6 / seconds, len(ids) / seconds))


if __name__ == "__main__":
    main()
