"""Hadamard matrices for the QuaRot-style rotations.

The residual rotation needs an orthogonal 576x576 matrix; 576 is no power of two, but
576 = 12 * 12 * 4 and a Hadamard matrix of order 12 exists (Paley I, q = 11), so
H_576 = H_12 (x) H_12 (x) H_4 is a true Hadamard matrix. Online rotations (ffn_down input, keys)
use the Sylvester H_128 / H_64 of the FWHT kernels.
"""
import numpy as np


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def sylvester(n: int) -> np.ndarray:
    """H_1 = [1], H_2n = [[H, H], [H, -H]]: the ordering of the C++/CUDA FWHT kernels."""
    if not _is_power_of_two(n):
        raise ValueError(f"Sylvester Hadamard needs a power of two, got {n}")
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def paley_12() -> np.ndarray:
    """Paley construction I for q = 11 (11 = 3 mod 4): H = I + [[0, 1^T], [-1, Q]] with Q the
    Jacobsthal matrix Q[i, j] = chi(j - i), chi the quadratic character mod 11."""
    q = 11
    residues = {(i * i) % q for i in range(1, q)}
    chi = np.array([0] + [1 if a in residues else -1 for a in range(1, q)])
    jacobsthal = np.array([[chi[(j - i) % q] for j in range(q)] for i in range(q)])
    s = np.zeros((q + 1, q + 1))
    s[0, 1:] = 1
    s[1:, 0] = -1
    s[1:, 1:] = jacobsthal
    return np.eye(q + 1) + s


def hadamard(n: int) -> np.ndarray:
    """A Hadamard matrix (entries +-1, H H^T = n I) of order 12^b * 2^a, built by Kronecker
    products of Paley's H_12 and Sylvester's H_(2^a)."""
    paley_factors = 0
    while n % 12 == 0 and not _is_power_of_two(n):
        n //= 12
        paley_factors += 1
    if not _is_power_of_two(n):
        raise ValueError("no Hadamard construction for this size (need 12^b * 2^a)")
    h = sylvester(n)
    for _ in range(paley_factors):
        h = np.kron(paley_12(), h)
    return h


def random_hadamard_rotation(n: int, seed: int) -> np.ndarray:
    """Orthogonal Q = diag(s) H_n / sqrt(n) with random signs s (QuaRot's randomized Hadamard)."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=n)
    return signs[:, None] * hadamard(n) / np.sqrt(n)


def block_hadamard(x: np.ndarray, block: int) -> np.ndarray:
    """y = H_block x / sqrt(block) on each consecutive block of the last axis (normalized FWHT,
    Sylvester ordering), in float32."""
    h = (sylvester(block) / np.sqrt(block)).astype(np.float32)
    grouped = x.reshape(*x.shape[:-1], x.shape[-1] // block, block)
    return (grouped @ h).reshape(x.shape)  # h is symmetric, so row-vector x h = (h x)^T
