"""The numpy forward on the real SmolLM2 GGUF against llama.cpp's logits on a short prompt.
llama.cpp multiplies Q4_1 weights with Q8_1-quantized activations, so logits agree closely but
not exactly with the FP32 dequantized forward."""
import os

import numpy as np

from tools.quantizer.gguf_loader import load_gguf
from tools.quantizer.model import LlamaModel, forward_hidden, logits
from tools.quantizer.tokenizer import GgufTokenizer

# Bazel's //tools:quantizer_test passes the model's runfile path; by hand, the repo's models/.
MODEL = os.environ.get("APEX4_MODEL") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = "The capital of France is Paris. The quick brown fox jumps over the lazy dog because"


def test_logits_match_llama_cpp():
    from llama_cpp import Llama

    tokens = GgufTokenizer(MODEL).encode(PROMPT)
    config, weights = load_gguf(MODEL)
    model = LlamaModel.from_weights(config, weights)
    ours = logits(model, forward_hidden(model, tokens[None]))[0]
    llama = Llama(model_path=MODEL, logits_all=True, n_ctx=64, n_threads=2, verbose=False)
    llama.eval(tokens.tolist())
    theirs = np.array(llama.scores[:len(tokens)])
    assert np.mean(ours.argmax(-1) == theirs.argmax(-1)) >= 0.9
    for ours_row, theirs_row in zip(ours, theirs):
        assert np.corrcoef(ours_row, theirs_row)[0, 1] > 0.995
    assert np.abs(ours - theirs).max() < 0.1 * np.abs(theirs).max()
