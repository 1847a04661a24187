"""Pre-tokenized calibration (.ids files): the same windows as from the text, with no tokenizer."""
import os

import numpy as np
import pytest

from tools.quantizer.calibration import calibration_batch, calibration_tokens
from tools.quantizer.cli import main
from tools.quantizer.gguf_loader import QuantizerError
from tools.quantizer.tokenizer import GgufTokenizer

MODEL = os.environ.get("APEX4_MODEL") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
TEXT = "The lobster is a species of clawed lobster from the eastern Atlantic Ocean.\n" * 200


def test_ids_file_gives_the_windows_of_the_text(tmp_path):
    text_path = tmp_path / "calib.txt"
    text_path.write_text(TEXT, encoding="utf-8")
    ids_path = tmp_path / "calib.ids"
    assert main(["calibration-ids", "--gguf", MODEL, "--calib", str(text_path), "--tokens", "512",
                 "--out", str(ids_path)]) == 0
    tokenizer = GgufTokenizer(MODEL)
    from_text = calibration_batch(tokenizer, str(text_path), 2, 32, seed=3)
    from_ids = calibration_batch(None, str(ids_path), 2, 32, seed=3)
    assert from_ids.shape == (2, 32)
    np.testing.assert_array_equal(from_ids, from_text)


def test_bad_ids_file_is_refused(tmp_path):
    bad = tmp_path / "bad.ids"
    bad.write_text("1 2 three 4\n", encoding="utf-8")
    with pytest.raises(QuantizerError, match="bad.ids"):
        calibration_tokens(None, str(bad), 10)


def test_ids_output_must_be_named_ids(tmp_path):
    assert main(["calibration-ids", "--gguf", MODEL, "--out", str(tmp_path / "x.txt")]) == 1
