"""apex4 offline W4A4 quantizer: GGUF in, apex4 checkpoint out (FORMAT.md), plus a numpy
fake-quant evaluator that reproduces the integer W4A4 arithmetic of kernels/cpu/w4a4_reference."""
