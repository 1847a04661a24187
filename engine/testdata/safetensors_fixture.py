#!/usr/bin/env python3
"""Writes OUT_DIR/small.safetensors with the safetensors package, for safetensors_reader_test.

Tensors (values chosen to be exact in their dtype):
  a  F32 [2, 3]  0.0, 0.5, ..., 2.5
  b  F16 [4]     1, -2, 0.5, 65504
  i  I64 [3]     1, 2, 3
metadata: {"format": "np", "writer": "apex4-test"}

Usage: safetensors_fixture.py OUT_DIR
"""
import os
import sys

import numpy as np
from safetensors.numpy import save_file


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    save_file({
        "a": (np.arange(6, dtype=np.float32) * 0.5).reshape(2, 3),
        "b": np.array([1, -2, 0.5, 65504], dtype=np.float16),
        "i": np.array([1, 2, 3], dtype=np.int64),
    }, os.path.join(out_dir, "small.safetensors"),
        metadata={"format": "np", "writer": "apex4-test"})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
