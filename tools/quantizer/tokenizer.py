"""The GGUF's own tokenizer through llama-cpp-python (vocab only: no weights are loaded)."""
import numpy as np

from .gguf_loader import QuantizerError


class GgufTokenizer:
    def __init__(self, gguf_path: str):
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise QuantizerError("llama-cpp-python is required for tokenization "
                                 "(pip install -r tools/requirements.txt)") from e
        self._llama = Llama(model_path=gguf_path, vocab_only=True, verbose=False)

    def encode(self, text: str) -> np.ndarray:
        """Plain text tokens without BOS (this model's add_bos_token is false)."""
        return np.array(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False),
                        dtype=np.int64)
