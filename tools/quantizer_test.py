"""Runs the quantizer's pytest suite (tools/quantizer/tests) as a Bazel test, on the real model."""

import os
import sys

import pytest

TEST_SRCDIR = os.environ["TEST_SRCDIR"]
WORKSPACE_ROOT = os.path.join(TEST_SRCDIR, "apex4")

if __name__ == "__main__":
    os.environ.setdefault("APEX4_MODEL", os.path.join(
        TEST_SRCDIR, "default_model", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # two BLAS threads crawl on 2 busy cores
    sys.path.insert(0, WORKSPACE_ROOT)
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider",
                          os.path.join(WORKSPACE_ROOT, "tools", "quantizer", "tests")]))
