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



def encode_prefix(tokenizer, text: str, min_tokens: int) -> np.ndarray:
    """Tokens of a prefix of `text` holding at least min_tokens (or all of it): tokenizing a
    whole book when a few windows are evaluated costs more than the model on a busy CPU.
    The prefix ends at a line break, so only whole lines are tokenized."""
    chars = 6 * min_tokens
    while True:
        cut = text.find("\n", chars)
        prefix = text if cut < 0 else text[:cut]
        tokens = tokenizer.encode(prefix)
        if len(tokens) >= min_tokens or len(prefix) == len(text):
            return tokens
        chars *= 2
