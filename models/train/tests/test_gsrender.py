"""Checks of the training renderer (b) against the float64 reference (a) of format-spec.md §3.

    python -m pytest models/train/tests/test_gsrender.py -q

The Triton kernels are checked on the CPU through Triton's interpreter (TRITON_INTERPRET=1, set
below before Triton is imported) when Triton is installed; on a GPU the same tests run natively.
"""

from __future__ import annotations

import math
import os

import torch  # noqa: E402  (does not import Triton)

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gsimg_train import gsrender as gr  # noqa: E402


def random_field(rng, B, K, Hg, Wg, C, cell, o_max, sigma_min, sigma_max, dtype=torch.float64):
    """A random anchored field with many Gaussians at the bounds (largest σ, extreme offsets)."""
    gy, gx = np.meshgrid(np.arange(Hg), np.arange(Wg), indexing="ij")
    shape = (B, K, Hg, Wg)
    off = rng.uniform(-o_max, o_max, (2,) + shape)
    ext = rng.random((2,) + shape) < 0.3  # 30 % pinned to ±o_max
    off = np.where(ext, np.sign(off) * o_max, off)
    x = (gx + 0.5) * cell + off[0]
    y = (gy + 0.5) * cell + off[1]
    ls = rng.uniform(math.log(sigma_min), math.log(sigma_max), (2,) + shape)
    big = rng.random((2,) + shape) < 0.3
    s = np.where(big, sigma_max, np.exp(ls))
    th = rng.uniform(-math.pi, math.pi, shape)
    col = rng.random((B, K, C, Hg, Wg))
    t = lambda a: torch.tensor(a, dtype=dtype)  # noqa: E731
    return t(x), t(y), t(s[0]), t(s[1]), t(th), t(col)


def as_list(x, y, s1, s2, th, col, b=0):
    """The field of batch item b as a (n, 5 + C) list for the reference renderer."""
    cols = [x[b], y[b], s1[b], s2[b], th[b]] + [col[b, :, c] for c in range(col.shape[2])]
    return torch.stack([t.reshape(-1) for t in cols], 1).numpy()


# (W, H, Wo, Ho): ×1, ×1.5, ×2.5, ×4, non-square scales, and a downscale.
SIZES = [(12, 10, 12, 10), (12, 10, 18, 15), (12, 10, 30, 25), (8, 6, 32, 24), (12, 10, 21, 34), (12, 10, 6, 5)]
# (cell, K, o_max, sigma_max): the upscale model's sub-cell grid, a unit grid, the compact grid
# (8-pixel cells, σ ≤ 9.5, scaled by 1/2), the 16-pixel compact grid (σ ≤ 19, scaled by 1/4).
GRIDS = [(0.5, 1, 0.5, 0.5), (1.0, 4, 0.75, 0.5), (4.0, 2, 1.999, 2.5), (4.0, 3, 1.999, 4.75)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("grid", GRIDS)
def test_anchored_equals_reference(size, grid):
    W, H, Wo, Ho = size
    cell, K, o_max, smax = grid
    rng = np.random.default_rng(hash((size, grid)) % 2**32)
    Hg, Wg = math.ceil(H / cell), math.ceil(W / cell)
    f = random_field(rng, 2, K, Hg, Wg, 3, cell, o_max, 0.05, smax)
    out = gr.render_anchored(*f, W, H, Wo, Ho, cell, o_max, smax)
    with torch.no_grad():
        for b in range(2):
            ref = gr.reference_render(as_list(*f, b=b), W, H, Wo, Ho)
            got = out[b].permute(1, 2, 0).numpy()
            assert np.abs(got - ref).max() <= 1e-5


def test_window_is_tight():
    """With one ring of cells less than window_radius gives, some pixel changes: the bound is
    not vacuous (the random fields do reach it)."""
    W, H, Wo, Ho = 12, 10, 12, 10
    cell, K, o_max, smax = 0.5, 1, 0.5, 0.5
    R = gr.window_radius(cell, o_max, smax, 1.0)
    assert R == 4
    rng = np.random.default_rng(1)
    f = random_field(rng, 1, K, 20, 24, 3, cell, o_max, 0.05, smax)
    mx, my, qa, qb, qc, amp = gr.project(*f[:5], 1.0, 1.0)
    geom = torch.stack([mx, my, qa, qb, qc, amp], 2)
    cx, cy = gr.cell_index(Wo, W, cell, "cpu"), gr.cell_index(Ho, H, cell, "cpu")
    full = gr._splat_torch(geom, f[5], cx, cy, R)
    less = gr._splat_torch(geom, f[5], cx, cy, R - 1)
    assert (full - less).abs().max() > 1e-6


def test_window_radius_inequality():
    for cell, o_max, smax in [(0.5, 0.5, 0.5), (1.0, 0.75, 0.5), (8.0, 4.0, 5.0)]:
        for s in [0.5, 1.0, 2.0, 8.0]:
            R = gr.window_radius(cell, o_max, smax, s)
            lhs = 3 * math.sqrt(smax**2 + gr.LAMBDA / s**2)
            assert lhs < (R + 0.5) * cell - o_max
            assert R == 0 or lhs + o_max + gr.WINDOW_MARGIN >= (R - 0.5) * cell


@pytest.mark.skipif(not gr.HAVE_TRITON, reason="Triton not installed")
@pytest.mark.parametrize("C", [1, 3, 4])
@pytest.mark.parametrize("size", [(6, 5, 6, 5), (6, 5, 15, 11), (4, 4, 3, 2)])
def test_triton_matches_torch(C, size):
    """Forward and gradients of the Triton kernels vs autograd through the torch path."""
    W, H, Wo, Ho = size
    cell, K, o_max, smax = 1.0, 2, 0.75, 0.5
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rng = np.random.default_rng(C * 100 + Wo)
    f = random_field(rng, 2, K, H, W, C, cell, o_max, 0.05, smax, dtype=torch.float32)
    mx, my, qa, qb, qc, amp = gr.project(*f[:5], Wo / W, Ho / H)
    geom = torch.stack([mx, my, qa, qb, qc, amp], 2).to(dev)
    col = f[5].to(dev)
    R = gr.window_radius(cell, o_max, smax, min(Wo / W, Ho / H))
    cx, cy = gr.cell_index(Wo, W, cell, dev), gr.cell_index(Ho, H, cell, dev)
    gout = torch.randn(2, C, Ho, Wo, device=dev)
    res = []
    for fn in (lambda g, c: gr._splat_torch(g, c, cx, cy, R), lambda g, c: gr._SplatTriton.apply(g, c, cx, cy, R)):
        g = geom.clone().requires_grad_(True)
        c = col.clone().requires_grad_(True)
        out = fn(g, c)
        (out * gout).sum().backward()
        res.append((out.detach(), g.grad, c.grad))
    (o1, g1, c1), (o2, g2, c2) = res
    assert (o1 - o2).abs().max() < 1e-5
    assert torch.allclose(c1, c2, rtol=1e-4, atol=1e-5)
    # geometry gradients can be large (conic terms); compare relative to their scale
    scale = g1.abs().amax(dim=(0, 1, 3, 4), keepdim=True).clamp_min(1e-6)
    assert ((g1 - g2).abs() / scale).max() < 1e-4


def test_fixtures_match_reference():
    """tests/fixtures/torch_render/case_N.bin (written by `gsimg-train fixtures`) hold renders within 1e-5 of
    the float64 reference for the Gaussians they list."""
    from pathlib import Path

    from gsimg_train.fixtures import read_case

    d = Path(__file__).resolve().parents[3] / "tests/fixtures/torch_render"
    files = sorted(d.glob("case_*.bin"))
    assert len(files) >= 3
    for p in files:
        W, H, Wo, Ho, rec, img = read_case(p)
        assert p.stat().st_size <= 200_000
        ref = gr.reference_render(rec.astype(np.float64), W, H, Wo, Ho)
        assert np.abs(img - ref).max() <= 1e-5, p.name


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gradient_floor_changes_only_uncovered_pixels(backend, monkeypatch):
    """The training floor on the weight sum (gsrender.GRAD_MIN_WEIGHT_SUM) leaves the rendered
    values and the gradients of covered pixels as they are, and bounds the gradient that an
    uncovered pixel sends to an absent (gate 0) Gaussian near it."""
    if backend == "triton" and not gr.HAVE_TRITON:
        pytest.skip("Triton not installed")
    monkeypatch.setenv("GSRENDER_BACKEND", backend)
    # Two Gaussians in a 2×1 grid of 8-px cells; the right one is absent, so the pixels of the
    # right cell that the left one does not reach are uncovered.
    x = torch.tensor([[[[4.0, 12.0]]]], dtype=torch.float32)
    y = torch.tensor([[[[4.0, 4.0]]]], dtype=torch.float32)
    s = torch.tensor([[[[1.0, 1.0]]]], dtype=torch.float32)
    th = torch.zeros(1, 1, 1, 2)
    col = torch.tensor([[[[0.2, 0.9]], [[0.4, 0.9]], [[0.6, 0.9]]]]).view(1, 1, 3, 1, 2)

    def run(floor):
        monkeypatch.setattr(gr, "GRAD_MIN_WEIGHT_SUM", floor)
        gate = torch.tensor([[[[1.0, 0.0]]]], requires_grad=True)
        out = gr.render_anchored(x, y, s, s, th, col, 16, 8, 16, 8, cell=8.0, o_max=4.0,
                                 sigma_max=1.0, amp_scale=gate)
        target = torch.full_like(out, 0.5)
        ((out - target) ** 2).sum().backward()
        return out.detach(), gate.grad.clone()

    out_spec, g_spec = run(gr.MIN_WEIGHT_SUM)
    out_floor, g_floor = run(1e-3)
    assert torch.equal(out_spec, out_floor)
    assert abs(float(g_spec[..., 0]) - float(g_floor[..., 0])) <= 1e-5 * max(1.0, abs(float(g_spec[..., 0])))
    assert abs(float(g_spec[..., 1])) > 1e9  # the spec's floor: an exploding gradient
    assert 0 < abs(float(g_floor[..., 1])) < 1e5


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_toggle_costs_match_rerendering(backend):
    """`toggle_costs` against rendering the field again with each Gaussian's gate switched."""
    if backend == "triton" and not gr.HAVE_TRITON:
        pytest.skip("Triton not installed")
    cell, K, o_max, smax = 4.0, 3, 1.999, 4.75
    W, H = 12, 8
    rng = np.random.default_rng(7)
    x, y, s1, s2, th, col = random_field(rng, 2, K, 2, 3, 3, cell, o_max, 0.3, smax, dtype=torch.float32)
    gate = torch.from_numpy(rng.random((2, K, 2, 3)) < 0.6).float()
    gate[0, :, 0, 0] = 0  # a cell with no present Gaussian
    gate[1, 0, 1, 1], gate[1, 1:, 1, 1] = 1, 0  # a cell with exactly one
    target = torch.from_numpy(rng.random((2, 3, H, W))).float()
    mse_w = 10.0

    def loss(g):
        with gr.use_backend("torch"):
            out = gr.render_anchored(x, y, s1, s2, th, col, W, H, W, H, cell, o_max, smax, amp_scale=g)
        e = out - target
        return (e.abs() + mse_w * e * e).sum((1, 2, 3))

    with gr.use_backend(backend):
        got = gr.toggle_costs(x, y, s1, s2, th, col, gate, target, cell, o_max, smax, mse_w)
    base = loss(gate)
    for b in range(2):
        for idx in np.ndindex(K, 2, 3):
            g = gate.clone()
            g[(b,) + idx] = 1 - g[(b,) + idx]
            want = float(loss(g)[b] - base[b])
            assert abs(float(got[(b,) + idx]) - want) <= 1e-3 * max(1.0, abs(want)), (b, idx)
