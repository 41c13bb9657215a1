"""Shared fixtures and helpers for the tensornn test suite."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.utils._python_dispatch
import torch.utils._pytree
from hypothesis import HealthCheck, settings

settings.register_profile(
    "tensornn", max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tensornn"))

DTYPES = [torch.float32, torch.float64]
# tolerances for comparing two routes to the same contraction
TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.fixture
def gen():
    "A fresh, seeded CPU generator (never global RNG state)."
    g = torch.Generator()
    g.manual_seed(1234)
    return g


def randn(*shape, gen, dtype=torch.float64, device="cpu"):
    return torch.randn(*shape, generator=gen, dtype=dtype).to(device)


def rel_err(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).norm() / exact.norm())


def well_conditioned_factors(shape, rank, *, gen, dtype=torch.float64):
    "Random factors with orthonormal-ish, unit-norm columns (QR of a Gaussian), so CP recovery is well posed."
    out = []
    for n in shape:
        A = torch.randn(n, rank, generator=gen, dtype=torch.float64)
        if n >= rank:
            A = torch.linalg.qr(A).Q
            # mix slightly so columns are not exactly orthogonal (a generic, still well-conditioned problem)
            A = A + 0.2 * torch.randn(n, rank, generator=gen, dtype=torch.float64) / math.sqrt(n)
        A = A / A.norm(dim=0)
        out.append(A.to(dtype))
    return out


@pytest.fixture
def tl_torch():
    "TensorLy with its PyTorch backend, restored to the previous backend afterwards."
    import tensorly as tl
    old = tl.get_backend()
    tl.set_backend("pytorch")
    try:
        yield tl
    finally:
        tl.set_backend(old)


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tests with one intra-op thread (restored afterwards).

    The tensors in these tests are tiny, so threads only add synchronisation; on a shared, oversubscribed machine
    OpenMP's spinning threads made the suite ~8x slower (143 s with 2 threads vs 18 s with 1 under load 8).
    Set TENSORNN_TEST_THREADS to use more."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("TENSORNN_TEST_THREADS", "1")))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class LargestResult(torch.utils._python_dispatch.TorchDispatchMode):
    "Records the entries of every new storage an operator returns while the mode is active (views and in-place results are not new)."
    def __init__(self):
        super().__init__()
        self.sizes = []

    @property
    def largest(self) -> int: return max(self.sizes, default=0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = lambda tree: [t for t in torch.utils._pytree.tree_leaves(tree) if isinstance(t, torch.Tensor)]
        given = {t.untyped_storage().data_ptr() for t in tensors((args, kwargs))}
        out = func(*args, **(kwargs or {}))
        for t in tensors(out):
            if t.untyped_storage().data_ptr() not in given:
                self.sizes.append(t.untyped_storage().nbytes() // t.element_size())
        return out
