"""A small random llama (same code paths as SmolLM2, shapes that need K padding) for fast tests."""
import numpy as np

from tools.quantizer.gguf_loader import ModelConfig, expected_shapes

TINY = ModelConfig(vocab_size=96, hidden_size=64, intermediate_size=256, num_layers=2,
                   num_heads=2, num_kv_heads=1, head_dim=32, rope_theta=10000.0,
                   rms_norm_eps=1e-5, context_length=256, bos_token_id=1, eos_token_id=2)


def tiny_weights(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_shapes(TINY).items():
        if len(shape) == 1:
            weights[name] = (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        else:
            weights[name] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
    return weights


class ByteTokenizer:
    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64) % TINY.vocab_size
