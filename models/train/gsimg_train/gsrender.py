"""PyTorch renderers of `format-spec.md` §3 (the normative rendering rule of `.gsi` files).

Two renderers live here:

(a) `reference_render`: any list of Gaussians (x, y, σ1, σ2, θ, c_1..c_C) in native pixels, every
    Gaussian against every output pixel, in float64. Slow; used by tests and fixtures only.

(b) `render_anchored` (with `project` and `splat`): the fast, differentiable renderer used in
    training, for *grid-anchored* fields. Gaussians sit on a grid of anchor cells of side `cell`
    native pixels, K Gaussians per cell, each centre within `o_max` (per axis) of its cell's
    centre and each σ ≤ `sigma_max`. An output pixel gathers only the Gaussians of the
    (2R+1)² cells around the cell its centre falls in. `window_radius` picks R so that no
    Gaussian outside that window can have q ≤ 9 at the pixel: then (b) equals (a) up to float
    rounding (tested in `test_gsrender.py`).

The window bound. Take the x axis (y is the same with sy). A Gaussian of cell column g has its
centre at x ≥ (g + ½)·cell − o_max... ≤ (g + ½)·cell + o_max. A pixel whose centre (mapped to
native coordinates) lies in cell column g + R + 1 or beyond is at native distance
    d ≥ (g + R + 1)·cell − (g + ½)·cell − o_max = (R + ½)·cell − o_max
from it. In output pixels the q ≤ 9 ellipse of the Gaussian reaches at most 3·sqrt(Σ'xx) along x,
with Σ'xx = sx²·Σxx + λ ≤ sx²·σ_max² + λ (λ = 1/12), i.e. 3·sqrt(σ_max² + λ/sx²) native pixels.
So the pixel is outside the ellipse (q > 9) whenever

    3 · sqrt(σ_max² + λ / s²) < (R + ½) · cell − o_max        (s = sx for x, sy for y)

At s ≥ 1 the left side is largest at s = 1: σ'² = σ_max² + 1/12 and 3σ' < R + ½ − o_max for a
unit cell. `window_radius` takes the smallest R that satisfies this with a small margin (for
rounding of the pixel → cell mapping), separately usable at any scale, downscales included.

The per-Gaussian math follows `src/render/project.rs`: Σ = R(θ)·diag(σ1², σ2²)·R(θ)ᵀ,
Σ' = S Σ S + λI, a = sx·sy·σ1·σ2 / sqrt(det Σ'), conic Q = Σ'⁻¹, pixel centres at (u + ½, v + ½),
w = a·exp(−q/2) for q ≤ 9, value = Σ w c / max(Σ w, 2⁻⁴⁰).

Backends of `splat`: a Triton kernel pair (forward, and a Gaussian-centric backward that needs no
atomics) when the tensors are on a GPU and Triton is importable (or when TRITON_INTERPRET=1 and
GSRENDER_BACKEND=triton, for CPU checks of the kernels); otherwise plain PyTorch gathers with
autograd. `GSRENDER_BACKEND=torch|triton` forces one.
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np
import torch

LAMBDA = 1.0 / 12.0  # prefilter variance, output px² (§3.3)
CUTOFF_Q = 9.0  # 3σ cutoff (§3.4)
MIN_WEIGHT_SUM = 2.0 ** -40  # §3.4
# The floor on the weight sum that the *gradient* of the normalization uses (the forward value
# always uses §3.4's 2^-40). With the spec's floor, a pixel that no present Gaussian reaches
# (D = 0) sends a gradient of size 2^40 to every absent Gaussian whose window covers it through
# the presence gate's straight-through estimator: one such pixel dominates the clipped gradient
# of a whole batch. A present Gaussian adds at least amp·e^-4.5 ≥ 0.0047 to D (amp ≥ 0.43 for
# σ ≥ 0.25 at scale ≥ 1), so with hard gates D is 0 or ≥ 0.0047, and a floor of 1e-3 changes
# no gradient of a covered pixel. Set by the compact model's training (`set_grad_weight_floor`).
GRAD_MIN_WEIGHT_SUM = MIN_WEIGHT_SUM


def set_grad_weight_floor(v: float):
    global GRAD_MIN_WEIGHT_SUM
    GRAD_MIN_WEIGHT_SUM = max(float(v), MIN_WEIGHT_SUM)
WINDOW_MARGIN = 1e-3  # native px of slack in the window bound, against rounding

try:  # Triton is optional: the CPU development machine may lack it.
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except Exception:  # pragma: no cover
    HAVE_TRITON = False


# ------------------------------------------------------------------------------------------------
# (a) the float64 reference
# ------------------------------------------------------------------------------------------------
def reference_render(gaussians, width: int, height: int, out_w: int, out_h: int) -> np.ndarray:
    """Renders a list of Gaussians by the letter of §3, in float64.

    gaussians: array [n, 5 + C] of (x, y, σ1, σ2, θ, c_1..c_C) in native pixels / radians.
    Returns [out_h, out_w, C] float64.
    """
    g = np.asarray(gaussians, dtype=np.float64)
    n, cols = g.shape
    nc = cols - 5
    sx, sy = out_w / width, out_h / height
    x, y, s1, s2, th = (g[:, i] for i in range(5))
    c, s = np.cos(th), np.sin(th)
    v1, v2 = s1 * s1, s2 * s2
    sxx = v1 * c * c + v2 * s * s
    syy = v1 * s * s + v2 * c * c
    sxy = (v1 - v2) * s * c
    oxx = sx * sx * sxx + LAMBDA
    oyy = sy * sy * syy + LAMBDA
    oxy = sx * sy * sxy
    det = oxx * oyy - oxy * oxy
    amp = np.sqrt((sx * sy * s1 * s2) ** 2 / det)
    qa, qb, qc = oyy / det, -oxy / det, oxx / det
    mx, my = sx * x, sy * y
    px = np.arange(out_w, dtype=np.float64) + 0.5
    py = np.arange(out_h, dtype=np.float64) + 0.5
    num = np.zeros((out_h, out_w, nc))
    den = np.zeros((out_h, out_w))
    chunk = max(1, int(4e6 // max(1, out_w * out_h)))
    for k0 in range(0, n, chunk):
        sl = slice(k0, min(n, k0 + chunk))
        dx = px[None, None, :] - mx[sl, None, None]
        dy = py[None, :, None] - my[sl, None, None]
        q = qa[sl, None, None] * dx * dx + 2 * qb[sl, None, None] * dx * dy + qc[sl, None, None] * dy * dy
        w = np.where(q <= CUTOFF_Q, amp[sl, None, None] * np.exp(-0.5 * q), 0.0)
        den += w.sum(0)
        num += np.einsum("kyx,kc->yxc", w, g[sl, 5:])
    return num / np.maximum(den, MIN_WEIGHT_SUM)[..., None]


# ------------------------------------------------------------------------------------------------
# (b) the training renderer
# ------------------------------------------------------------------------------------------------
def window_radius(cell: float, o_max: float, sigma_max: float, scale: float) -> int:
    """Smallest R with 3·sqrt(σ_max² + λ/scale²) + o_max + margin < (R + ½)·cell (see module doc)."""
    reach = 3.0 * math.sqrt(sigma_max ** 2 + LAMBDA / (scale * scale)) + o_max + WINDOW_MARGIN
    return max(0, math.floor(reach / cell - 0.5) + 1)


def project(x, y, s1, s2, theta, sx: float, sy: float):
    """§3.2–3.3 for tensors of any (equal) shape: native-pixel Gaussians → output-pixel centre,
    conic and amplitude. Returns (mx, my, A, B, Cq, amp), differentiable.

    det Σ' is computed as det(SΣS) + λ·tr(SΣS) + λ², equal to Σ'xx Σ'yy − Σ'xy² but free of
    cancellation for thin Gaussians in float32.
    """
    c, s = torch.cos(theta), torch.sin(theta)
    v1, v2 = s1 * s1, s2 * s2
    sxx = v1 * c * c + v2 * s * s
    syy = v1 * s * s + v2 * c * c
    sxy = (v1 - v2) * s * c
    oxx = (sx * sx) * sxx + LAMBDA
    oyy = (sy * sy) * syy + LAMBDA
    oxy = (sx * sy) * sxy
    d0 = (sx * sy) * s1 * s2  # sqrt det(SΣS)
    det = d0 * d0 + LAMBDA * ((sx * sx) * sxx + (sy * sy) * syy) + LAMBDA * LAMBDA
    amp = d0 * torch.rsqrt(det)
    return sx * x, sy * y, oyy / det, -oxy / det, oxx / det, amp


def cell_index(n_out: int, n_native: int, cell: float, device) -> torch.Tensor:
    """Cell (along one axis) of each output pixel centre: floor(((u + ½)·n_native/n_out)/cell)."""
    u = np.arange(n_out, dtype=np.float64)
    idx = np.floor((u + 0.5) * (n_native / n_out) / cell).astype(np.int64)
    return torch.from_numpy(idx).to(device)


def _splat_torch(geom, col, cx, cy, R: int, return_den: bool = False):
    """Plain PyTorch splat (autograd-differentiable). geom [B,K,6,Hg,Wg], col [B,K,C,Hg,Wg]."""
    B, K, _, Hg, Wg = geom.shape
    C = col.shape[2]
    Ho, Wo = cy.numel(), cx.numel()
    dt = geom.dtype
    px = (torch.arange(Wo, device=geom.device, dtype=dt) + 0.5).view(1, 1, 1, Wo)
    py = (torch.arange(Ho, device=geom.device, dtype=dt) + 0.5).view(1, 1, Ho, 1)
    num = torch.zeros(B, C, Ho, Wo, device=geom.device, dtype=dt)
    den = torch.zeros(B, 1, Ho, Wo, device=geom.device, dtype=dt)
    allp = torch.cat([geom, col], 2)  # [B, K, 6 + C, Hg, Wg]
    for j in range(-R, R + 1):
        gy = cy + j
        oky = (gy >= 0) & (gy < Hg)
        rows = allp.index_select(3, gy.clamp(0, Hg - 1))
        for i in range(-R, R + 1):
            gx = cx + i
            okx = (gx >= 0) & (gx < Wg)
            p = rows.index_select(4, gx.clamp(0, Wg - 1))  # [B, K, 6 + C, Ho, Wo]
            ok = (oky.view(Ho, 1) & okx.view(1, Wo)).view(1, 1, Ho, Wo)
            dx = px - p[:, :, 0]
            dy = py - p[:, :, 1]
            q = p[:, :, 2] * dx * dx + 2 * p[:, :, 3] * dx * dy + p[:, :, 4] * dy * dy
            w = torch.where(ok & (q <= CUTOFF_Q), p[:, :, 5] * torch.exp(-0.5 * q), torch.zeros_like(q))
            den = den + w.sum(1, keepdim=True)
            num = num + (w.unsqueeze(2) * p[:, :, 6:]).sum(1)
    out = num / den.clamp_min(MIN_WEIGHT_SUM)
    if return_den:
        return out, den[:, 0]
    if GRAD_MIN_WEIGHT_SUM > MIN_WEIGHT_SUM:  # same value, gradient through the training floor
        og = num / den.clamp_min(GRAD_MIN_WEIGHT_SUM)
        out = og + (out - og).detach()
    return out


if HAVE_TRITON:

    # Sizes vary from batch to batch (random output scales): without do_not_specialize, Triton
    # compiles a variant for each pattern of "divisible by 16 / equal to 1" among them (measured:
    # the first 500 training steps took 250 s on a fresh machine).
    @triton.jit(do_not_specialize=["K", "Hg", "Wg", "Ho", "Wo"])
    def _splat_fwd_kernel(geom, col, cx, cy, out, dsum, K, Hg, Wg, Ho, Wo,
                          C: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        npix = Ho * Wo
        m = offs < npix
        v = offs // Wo
        u = offs % Wo
        gx0 = tl.load(cx + u, mask=m, other=0).to(tl.int32)
        gy0 = tl.load(cy + v, mask=m, other=0).to(tl.int32)
        px = u.to(tl.float32) + 0.5
        py = v.to(tl.float32) + 0.5
        hw = Hg * Wg
        a0 = tl.zeros([BLOCK], tl.float32)
        a1 = tl.zeros([BLOCK], tl.float32)
        a2 = tl.zeros([BLOCK], tl.float32)
        a3 = tl.zeros([BLOCK], tl.float32)
        den = tl.zeros([BLOCK], tl.float32)
        for k in tl.range(0, K):
            gb = geom + (b * K + k) * 6 * hw
            cb = col + (b * K + k) * C * hw
            # rows of the window in a loop, columns unrolled: unrolling all (2R+1)² cells made the
            # R = 4 kernel take ~140 s to compile (the slow start of the first training chunks)
            for j in tl.range(0, 2 * R + 1):
                gy = gy0 + (j - R)
                oky = m & (gy >= 0) & (gy < Hg)
                for i in tl.static_range(2 * R + 1):
                    gx = gx0 + (i - R)
                    ok = oky & (gx >= 0) & (gx < Wg)
                    idx = gy * Wg + gx
                    mx = tl.load(gb + idx, mask=ok, other=0.0)
                    my = tl.load(gb + hw + idx, mask=ok, other=0.0)
                    qa = tl.load(gb + 2 * hw + idx, mask=ok, other=0.0)
                    qb = tl.load(gb + 3 * hw + idx, mask=ok, other=0.0)
                    qc = tl.load(gb + 4 * hw + idx, mask=ok, other=0.0)
                    amp = tl.load(gb + 5 * hw + idx, mask=ok, other=0.0)
                    dx = px - mx
                    dy = py - my
                    q = qa * dx * dx + 2.0 * qb * dx * dy + qc * dy * dy
                    w = tl.where(ok & (q <= 9.0), amp * tl.exp(-0.5 * q), 0.0)
                    den += w
                    a0 += w * tl.load(cb + idx, mask=ok, other=0.0)
                    if C > 1:
                        a1 += w * tl.load(cb + hw + idx, mask=ok, other=0.0)
                    if C > 2:
                        a2 += w * tl.load(cb + 2 * hw + idx, mask=ok, other=0.0)
                    if C > 3:
                        a3 += w * tl.load(cb + 3 * hw + idx, mask=ok, other=0.0)
        dm = tl.maximum(den, 9.094947017729282e-13)  # 2^-40
        ob = out + b * C * npix
        tl.store(ob + offs, a0 / dm, mask=m)
        if C > 1:
            tl.store(ob + npix + offs, a1 / dm, mask=m)
        if C > 2:
            tl.store(ob + 2 * npix + offs, a2 / dm, mask=m)
        if C > 3:
            tl.store(ob + 3 * npix + offs, a3 / dm, mask=m)
        tl.store(dsum + b * npix + offs, den, mask=m)

    @triton.jit
    def _gaussian_lane(geom, rlo, rhi, clo, chi, K, Hg, Wg, BLOCK: tl.constexpr):
        """The Gaussian-centric kernels' lanes: batch item b, slot k and cell idx of each lane,
        its mask, its projected geometry, and the output rows r0..r1 and columns u0..u1 whose
        window holds its cell."""
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        hw = Hg * Wg
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        m = offs < K * hw
        k = offs // hw
        idx = offs % hw
        gy = idx // Wg
        gx = idx % Wg
        gb = geom + (b * K + k) * 6 * hw + idx
        mx = tl.load(gb, mask=m, other=0.0)
        my = tl.load(gb + hw, mask=m, other=0.0)
        qa = tl.load(gb + 2 * hw, mask=m, other=0.0)
        qb = tl.load(gb + 3 * hw, mask=m, other=0.0)
        qc = tl.load(gb + 4 * hw, mask=m, other=0.0)
        amp = tl.load(gb + 5 * hw, mask=m, other=0.0)
        r0 = tl.load(rlo + gy, mask=m, other=0)
        r1 = tl.load(rhi + gy, mask=m, other=-1)
        u0 = tl.load(clo + gx, mask=m, other=0)
        u1 = tl.load(chi + gx, mask=m, other=-1)
        return b, k, idx, m, mx, my, qa, qb, qc, amp, r0, r1, u0, u1

    @triton.jit
    def _lane_pixel(u, u1, okr, dy, mx, qa, qb, qc):
        """One output pixel (column u of a row whose lanes okr hold) of each lane's window: its
        x offset, the quadratic form q, and whether the Gaussian reaches it (q ≤ 9)."""
        ok = okr & (u <= u1)
        dx = u.to(tl.float32) + 0.5 - mx
        q = qa * dx * dx + 2.0 * qb * dx * dy + qc * dy * dy
        return u, dx, q, ok & (q <= 9.0)

    @triton.jit(do_not_specialize=["K", "Hg", "Wg", "Ho", "Wo", "MR", "MC"])
    def _splat_bwd_kernel(geom, col, gn, gd, rlo, rhi, clo, chi, ggeom, gcol, K, Hg, Wg, Ho, Wo,
                          MR, MC, C: tl.constexpr, BLOCK: tl.constexpr):
        # One lane per Gaussian: loops over the output pixels whose window contains its cell and
        # accumulates its own gradient (no atomics). gn = dL/dN_c = g_c / D, gd = dL/dD.
        b, k, idx, m, mx, my, qa, qb, qc, amp, r0, r1, u0, u1 = _gaussian_lane(
            geom, rlo, rhi, clo, chi, K, Hg, Wg, BLOCK)
        hw = Hg * Wg
        cb = col + (b * K + k) * C * hw + idx
        c0 = tl.load(cb, mask=m, other=0.0)
        c1 = tl.load(cb + hw, mask=m & (C > 1), other=0.0)
        c2 = tl.load(cb + 2 * hw, mask=m & (C > 2), other=0.0)
        c3 = tl.load(cb + 3 * hw, mask=m & (C > 3), other=0.0)
        g_mx = tl.zeros([BLOCK], tl.float32)
        g_my = tl.zeros([BLOCK], tl.float32)
        g_a = tl.zeros([BLOCK], tl.float32)
        g_b = tl.zeros([BLOCK], tl.float32)
        g_c = tl.zeros([BLOCK], tl.float32)
        g_amp = tl.zeros([BLOCK], tl.float32)
        g0 = tl.zeros([BLOCK], tl.float32)
        g1 = tl.zeros([BLOCK], tl.float32)
        g2 = tl.zeros([BLOCK], tl.float32)
        g3 = tl.zeros([BLOCK], tl.float32)
        npix = Ho * Wo
        gnb = gn + b * C * npix
        gdb = gd + b * npix
        for r in tl.range(0, MR):
            v = r0 + r
            okr = m & (v <= r1)
            dy = v.to(tl.float32) + 0.5 - my
            for cc in tl.range(0, MC):
                u, dx, q, ins = _lane_pixel(u0 + cc, u1, okr, dy, mx, qa, qb, qc)
                e = tl.where(ins, tl.exp(-0.5 * q), 0.0)
                w = amp * e
                p = v * Wo + u
                n0 = tl.load(gnb + p, mask=ins, other=0.0)
                dldw = tl.load(gdb + p, mask=ins, other=0.0) + n0 * c0
                g0 += n0 * w
                if C > 1:
                    n1 = tl.load(gnb + npix + p, mask=ins, other=0.0)
                    dldw += n1 * c1
                    g1 += n1 * w
                if C > 2:
                    n2 = tl.load(gnb + 2 * npix + p, mask=ins, other=0.0)
                    dldw += n2 * c2
                    g2 += n2 * w
                if C > 3:
                    n3 = tl.load(gnb + 3 * npix + p, mask=ins, other=0.0)
                    dldw += n3 * c3
                    g3 += n3 * w
                g_amp += dldw * e
                dq = -0.5 * dldw * w
                g_a += dq * dx * dx
                g_b += dq * 2.0 * dx * dy
                g_c += dq * dy * dy
                g_mx -= dq * 2.0 * (qa * dx + qb * dy)
                g_my -= dq * 2.0 * (qb * dx + qc * dy)
        ob = ggeom + (b * K + k) * 6 * hw + idx
        tl.store(ob, g_mx, mask=m)
        tl.store(ob + hw, g_my, mask=m)
        tl.store(ob + 2 * hw, g_a, mask=m)
        tl.store(ob + 3 * hw, g_b, mask=m)
        tl.store(ob + 4 * hw, g_c, mask=m)
        tl.store(ob + 5 * hw, g_amp, mask=m)
        oc = gcol + (b * K + k) * C * hw + idx
        tl.store(oc, g0, mask=m)
        if C > 1:
            tl.store(oc + hw, g1, mask=m)
        if C > 2:
            tl.store(oc + 2 * hw, g2, mask=m)
        if C > 3:
            tl.store(oc + 3 * hw, g3, mask=m)

    @triton.jit(do_not_specialize=["K", "Hg", "Wg", "Ho", "Wo", "MR", "MC"])
    def _toggle_kernel(geom, col, gate, nsum, dsum, tgt, rlo, rhi, clo, chi, cost, K, Hg, Wg, Ho, Wo,
                       MR, MC, mse_w, C: tl.constexpr, BLOCK: tl.constexpr):
        # One lane per Gaussian, over the same pixels as the backward kernel: the change in
        # Σ (|e| + mse_w·e²) when this Gaussian alone is switched (present → absent or back).
        b, k, idx, m, mx, my, qa, qb, qc, amp, r0, r1, u0, u1 = _gaussian_lane(
            geom, rlo, rhi, clo, chi, K, Hg, Wg, BLOCK)
        hw = Hg * Wg
        cb = col + (b * K + k) * C * hw + idx
        sgn = 1.0 - 2.0 * tl.load(gate + (b * K + k) * hw + idx, mask=m, other=0.0)
        acc = tl.zeros([BLOCK], tl.float32)
        npix = Ho * Wo
        for r in tl.range(0, MR):
            v = r0 + r
            okr = m & (v <= r1)
            dy = v.to(tl.float32) + 0.5 - my
            for cc in tl.range(0, MC):
                u, dx, q, ins = _lane_pixel(u0 + cc, u1, okr, dy, mx, qa, qb, qc)
                w = tl.where(ins, amp * tl.exp(-0.5 * q), 0.0)
                p = v * Wo + u
                d0 = tl.load(dsum + b * npix + p, mask=ins, other=1.0)
                d1 = d0 + sgn * w
                ok0 = d0 > 1e-9
                ok1 = d1 > 1e-9
                for ch in tl.static_range(C):
                    n0 = tl.load(nsum + (b * C + ch) * npix + p, mask=ins, other=0.0)
                    x = tl.load(tgt + (b * C + ch) * npix + p, mask=ins, other=0.0)
                    c = tl.load(cb + ch * hw, mask=m, other=0.0)
                    e0 = tl.where(ok0, n0 / tl.where(ok0, d0, 1.0), 0.0) - x
                    e1 = tl.where(ok1, (n0 + sgn * w * c) / tl.where(ok1, d1, 1.0), 0.0) - x
                    acc += tl.where(ins, tl.abs(e1) - tl.abs(e0) + mse_w * (e1 * e1 - e0 * e0), 0.0)
        tl.store(cost + (b * K + k) * hw + idx, acc, mask=m)


def _pixel_ranges(idx: torch.Tensor, n_grid: int, R: int):
    """For each grid line g: first and last output line whose cell is within R of g."""
    g = torch.arange(n_grid, device=idx.device, dtype=idx.dtype)
    lo = torch.searchsorted(idx, g - R, right=False)
    hi = torch.searchsorted(idx, g + R, right=True) - 1
    span = int((hi - lo + 1).clamp_min(0).max().item()) if n_grid else 0
    return lo.to(torch.int32).contiguous(), hi.to(torch.int32).contiguous(), span


class _SplatTriton(torch.autograd.Function):
    BLOCK_F = 128
    BLOCK_B = 64

    @staticmethod
    def launch_forward(geom, col, cx, cy, R):
        """The forward kernel on float32 contiguous `geom`, `col`: the normalized colours
        [B, C, Ho, Wo] and the weight sum D per output pixel [B, Ho, Wo]."""
        B, K, _, Hg, Wg = geom.shape
        Ho, Wo = cy.numel(), cx.numel()
        out = torch.empty(B, col.shape[2], Ho, Wo, device=geom.device, dtype=torch.float32)
        den = torch.empty(B, Ho, Wo, device=geom.device, dtype=torch.float32)
        grid = (triton.cdiv(Ho * Wo, _SplatTriton.BLOCK_F), B)
        _splat_fwd_kernel[grid](geom, col, cx.to(torch.int32).contiguous(), cy.to(torch.int32).contiguous(),
                                out, den, K, Hg, Wg, Ho, Wo, C=col.shape[2], R=R, BLOCK=_SplatTriton.BLOCK_F)
        return out, den

    @staticmethod
    def forward(ctx, geom, col, cx, cy, R):
        geom = geom.float().contiguous()
        col = col.float().contiguous()
        out, den = _SplatTriton.launch_forward(geom, col, cx, cy, R)
        ctx.save_for_backward(geom, col, cx, cy, out, den)
        ctx.R = R
        return out

    @staticmethod
    def backward(ctx, gout):
        geom, col, cx, cy, out, den = ctx.saved_tensors
        R = ctx.R
        B, K, _, Hg, Wg = geom.shape
        C = col.shape[2]
        Ho, Wo = cy.numel(), cx.numel()
        gout = gout.float().contiguous()
        dm = den.clamp_min(GRAD_MIN_WEIGHT_SUM).unsqueeze(1)
        gn = (gout / dm).contiguous()
        gd = (-(gn * out).sum(1) * (den >= MIN_WEIGHT_SUM)).contiguous()
        rlo, rhi, mr = _pixel_ranges(cy, Hg, R)
        clo, chi, mc = _pixel_ranges(cx, Wg, R)
        ggeom = torch.empty_like(geom)
        gcol = torch.empty_like(col)
        grid = (triton.cdiv(K * Hg * Wg, _SplatTriton.BLOCK_B), B)
        _splat_bwd_kernel[grid](geom, col, gn, gd, rlo, rhi, clo, chi, ggeom, gcol, K, Hg, Wg, Ho, Wo,
                                mr, mc, C=C, BLOCK=_SplatTriton.BLOCK_B)
        return ggeom, gcol, None, None, None


_FORCED_BACKEND: str | None = None


@contextlib.contextmanager
def use_backend(name: str):
    """Forces a backend of `splat` inside the block (over GSRENDER_BACKEND): the compact model's
    unrolled refinement needs "torch", whose autograd graph can be differentiated twice."""
    global _FORCED_BACKEND
    old, _FORCED_BACKEND = _FORCED_BACKEND, name
    try:
        yield
    finally:
        _FORCED_BACKEND = old


def splat_backend(device) -> str:
    forced = _FORCED_BACKEND or os.environ.get("GSRENDER_BACKEND")
    if forced:
        return forced
    if HAVE_TRITON and torch.device(device).type == "cuda":
        return "triton"
    return "torch"


def splat(geom, col, cx, cy, R: int):
    """Normalized splat of grid-anchored, projected Gaussians (§3.4).

    geom: [B, K, 6, Hg, Wg] = (mx, my, A, B, Cq, amp) in output pixels (from `project`);
    col: [B, K, C, Hg, Wg]; cx [Wo], cy [Ho]: cell of each output column/row (`cell_index`);
    R: window radius in cells. Returns [B, C, Ho, Wo].
    """
    if splat_backend(geom.device) == "triton":
        return _SplatTriton.apply(geom, col, cx, cy, R)
    return _splat_torch(geom, col, cx, cy, R)


def render_anchored(x, y, s1, s2, theta, col, width: int, height: int, out_w: int, out_h: int,
                    cell: float, o_max: float, sigma_max: float, amp_scale=None):
    """Renders a grid-anchored field at out_w × out_h (§3, exactly; see the module doc).

    x, y: absolute centres in native pixels, s1, s2 (σ, native px), theta: [B, K, Hg, Wg];
    col: [B, K, C, Hg, Wg]. Gaussian (k, gy, gx) must lie within o_max per axis of the centre of
    cell (gy, gx) (side `cell`) and have σ ≤ sigma_max. amp_scale (optional, [B, K, Hg, Wg])
    multiplies the weights: 1 keeps a Gaussian, 0 removes it (presence gates).
    Returns [B, C, out_h, out_w] in the dtype of the inputs (float32 or float64).
    """
    geom, cx, cy, R = _anchored_geometry(x, y, s1, s2, theta, width, height, out_w, out_h, cell, o_max, sigma_max)
    if amp_scale is not None:
        geom = torch.cat([geom[:, :, :5], (geom[:, :, 5] * amp_scale).unsqueeze(2)], 2)
    return splat(geom, col, cx, cy, R)


def _anchored_geometry(x, y, s1, s2, theta, width: int, height: int, out_w: int, out_h: int,
                       cell: float, o_max: float, sigma_max: float):
    """A grid-anchored field projected to the output (`project`, [B, K, 6, Hg, Wg]), the cell of
    each output column and row, and the window radius that makes the splat exact."""
    sx, sy = out_w / width, out_h / height
    R = max(window_radius(cell, o_max, sigma_max, sx), window_radius(cell, o_max, sigma_max, sy))
    geom = torch.stack(project(x, y, s1, s2, theta, sx, sy), 2)
    dev = geom.device
    return geom, cell_index(out_w, width, cell, dev), cell_index(out_h, height, cell, dev), R


def _toggle_torch(geom, col, gate, nsum, dsum, tgt, mse_w: float):
    """Dense reference of `toggle_costs` (every Gaussian against every pixel; small sizes)."""
    B, K, _, Hg, Wg = geom.shape
    Ho, Wo = dsum.shape[-2:]
    dt = geom.dtype
    px = (torch.arange(Wo, device=geom.device, dtype=dt) + 0.5).view(1, 1, 1, Wo)
    py = (torch.arange(Ho, device=geom.device, dtype=dt) + 0.5).view(1, 1, Ho, 1)
    g = geom.permute(0, 1, 3, 4, 2).reshape(B, -1, 6)  # [B, n, 6]
    c = col.permute(0, 1, 3, 4, 2).reshape(B, -1, col.shape[2])  # [B, n, C]
    sgn = (1.0 - 2.0 * gate).reshape(B, -1)
    out = torch.zeros(B, g.shape[1], dtype=dt, device=geom.device)
    d0 = dsum.unsqueeze(1)  # [B, 1, Ho, Wo]
    ok0 = d0 > 1e-9
    e0 = torch.where(ok0.unsqueeze(2), nsum.unsqueeze(1) / torch.where(ok0, d0, 1.0).unsqueeze(2), 0.0) \
        - tgt.unsqueeze(1)  # [B, 1, C, Ho, Wo]
    for s in range(0, g.shape[1], 64):
        gg = g[:, s:s + 64]
        dx = px - gg[..., 0, None, None]
        dy = py - gg[..., 1, None, None]
        q = gg[..., 2, None, None] * dx * dx + 2 * gg[..., 3, None, None] * dx * dy + gg[..., 4, None, None] * dy * dy
        w = torch.where(q <= CUTOFF_Q, gg[..., 5, None, None] * torch.exp(-0.5 * q), torch.zeros_like(q))
        sw = sgn[:, s:s + 64, None, None] * w  # [B, n, Ho, Wo]
        d1 = d0 + sw
        ok1 = d1 > 1e-9
        n1 = nsum.unsqueeze(1) + sw.unsqueeze(2) * c[:, s:s + 64, :, None, None]
        e1 = torch.where(ok1.unsqueeze(2), n1 / torch.where(ok1, d1, 1.0).unsqueeze(2), 0.0) - tgt.unsqueeze(1)
        diff = e1.abs() - e0.abs() + mse_w * (e1 * e1 - e0 * e0)
        out[:, s:s + 64] = torch.where((w > 0).unsqueeze(2), diff, torch.zeros_like(diff)).sum((2, 3, 4))
    return out.view(B, K, Hg, Wg)


@torch.no_grad()
def toggle_costs(x, y, s1, s2, theta, col, gate, target, cell: float, o_max: float, sigma_max: float,
                 mse_w: float = 0.0):
    """What switching each Gaussian alone would do to the loss: the change in
    Σ over pixels and channels of |e| + mse_w·e² (e = render − target, at the native size), for
    a present Gaussian (gate 1) when it is removed and for an absent one (gate 0) when it is
    added, all others as they are. With normalized blending this is exact per Gaussian: each
    pixel it reaches goes from N/D to (N ∓ w·c)/(D ∓ w) (§3.4).

    The field as for `render_anchored`; gate [B, K, Hg, Wg] (0 or 1); target [B, C, H, W].
    Returns [B, K, Hg, Wg].
    """
    H, W = target.shape[-2:]
    geom, cx, cy, R = _anchored_geometry(x, y, s1, s2, theta, W, H, W, H, cell, o_max, sigma_max)
    geom, col, gate, target = geom.float(), col.float(), gate.float(), target.float()
    gated = torch.cat([geom[:, :, :5], (geom[:, :, 5] * gate).unsqueeze(2)], 2)
    out, den = _splat_with_den(gated, col, cx, cy, R)
    nsum = out * den.unsqueeze(1)  # N = (N / D)·D; 0 where D = 0
    if splat_backend(geom.device) == "triton":
        B, K, _, Hg, Wg = geom.shape
        rlo, rhi, mr = _pixel_ranges(cy, Hg, R)
        clo, chi, mc = _pixel_ranges(cx, Wg, R)
        cost = torch.empty(B, K, Hg, Wg, device=geom.device, dtype=torch.float32)
        grid = (triton.cdiv(K * Hg * Wg, _SplatTriton.BLOCK_B), B)
        _toggle_kernel[grid](geom.contiguous(), col.contiguous(), gate.contiguous(), nsum.contiguous(),
                             den.contiguous(), target.contiguous(), rlo, rhi, clo, chi, cost, K, Hg, Wg,
                             H, W, mr, mc, float(mse_w), C=col.shape[2], BLOCK=_SplatTriton.BLOCK_B)
        return cost
    return _toggle_torch(geom, col, gate, nsum, den, target, mse_w)


def _splat_with_den(geom, col, cx, cy, R: int):
    """`splat` without gradients, and the weight sum D per output pixel [B, Ho, Wo] beside it."""
    if splat_backend(geom.device) == "triton":
        return _SplatTriton.launch_forward(geom.float().contiguous(), col.float().contiguous(), cx, cy, R)
    return _splat_torch(geom, col, cx, cy, R, return_den=True)
