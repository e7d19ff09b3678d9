"""Writes tests/fixtures/torch_render/case_N.bin: renders of the PyTorch renderer for the Rust
cross-check (the Rust CPU renderer must match them within 1e-4).

Layout, little-endian:
    b"GSRF", u32 version = 1, u32 W, u32 H, u32 Wo, u32 Ho, u32 C (1..4), u32 n,
    n records of (5 + C) f32: x, y, σ1, σ2, θ, c_1..c_C   (native pixels, radians)
    Ho·Wo·C f32: the render, row-major, channels interleaved.

Cases 0–2 are grid-anchored fields rendered by the training renderer (b) in float32 (the window
radius follows the bound in gsrender.py, downscale included); case 3 is a free list of Gaussians,
rendered by the float64 reference (a) and rounded to f32. Gaussians are drawn with colours in
[0, 1] and σ in [0.3, 6] native px; the border cells' Gaussians (and case 3's free centres) reach
past the image edges. Gaussians are rounded to f32 before rendering, so the file holds exactly
what was rendered.

    gsimg-train fixtures --out tests/fixtures/torch_render   (from the repository root)
"""

from __future__ import annotations

import argparse
import math
import os
import struct
from pathlib import Path

import numpy as np
import torch

from . import gsrender as gr

SIGMA = (0.3, 6.0)

# name, C, W, H, Wo, Ho, anchored cell (None: free list), K per cell
CASES = [
    ("rgb 1x, anchored cell 8", 3, 48, 40, 48, 40, 8.0, 2),
    ("rgba x2.5 non-square image, anchored cell 4", 4, 40, 24, 100, 60, 4.0, 2),
    ("gray x0.5 downscale, anchored cell 8", 1, 64, 48, 32, 24, 8.0, 2),
    ("rgb free list, sx=1.733 sy=3", 3, 30, 20, 52, 60, None, 150),
]


def f32(a):
    return np.asarray(a, dtype=np.float32)


def anchored_case(rng, C, W, H, Wo, Ho, cell, K):
    """Random anchored field (each Gaussian inside its cell), rendered by renderer (b) in f32."""
    Hg, Wg = math.ceil(H / cell), math.ceil(W / cell)
    o_max = cell / 2 * (1 - 1e-3)
    gy, gx = np.meshgrid(np.arange(Hg), np.arange(Wg), indexing="ij")
    shape = (1, K, Hg, Wg)
    x = f32((gx + 0.5) * cell + rng.uniform(-o_max, o_max, shape))
    y = f32((gy + 0.5) * cell + rng.uniform(-o_max, o_max, shape))
    s1 = f32(np.exp(rng.uniform(math.log(SIGMA[0]), math.log(SIGMA[1]), shape)))
    s2 = f32(np.exp(rng.uniform(math.log(SIGMA[0]), math.log(SIGMA[1]), shape)))
    th = f32(rng.uniform(0, math.pi, shape))
    col = f32(rng.random((1, K, C, Hg, Wg)))
    t = torch.from_numpy
    old = os.environ.get("GSRENDER_BACKEND")
    os.environ["GSRENDER_BACKEND"] = "torch"  # same math as the Triton kernels, deterministic on CPU
    try:
        with torch.no_grad():
            out = gr.render_anchored(t(x), t(y), t(s1), t(s2), t(th), t(col), W, H, Wo, Ho, cell, o_max, SIGMA[1])
    finally:
        if old is None:
            del os.environ["GSRENDER_BACKEND"]
        else:
            os.environ["GSRENDER_BACKEND"] = old
    rec = [x[0], y[0], s1[0], s2[0], th[0]] + [col[0, :, c] for c in range(C)]
    records = np.stack([a.reshape(-1) for a in rec], 1)
    return records, out[0].permute(1, 2, 0).numpy().astype(np.float32)


def free_case(rng, C, W, H, Wo, Ho, n):
    """Random free Gaussians (centres up to 3 px outside the picture), rendered by (a)."""
    x = rng.uniform(-3, W + 3, n)
    y = rng.uniform(-3, H + 3, n)
    s = np.exp(rng.uniform(math.log(SIGMA[0]), math.log(SIGMA[1]), (2, n)))
    th = rng.uniform(-math.pi, math.pi, n)
    col = rng.random((n, C))
    records = f32(np.column_stack([x, y, s[0], s[1], th, col]))
    return records, gr.reference_render(records.astype(np.float64), W, H, Wo, Ho).astype(np.float32)


def write_case(path: Path, W, H, Wo, Ho, records, image):
    C = records.shape[1] - 5
    assert image.shape == (Ho, Wo, C)
    with open(path, "wb") as f:
        f.write(b"GSRF")
        f.write(struct.pack("<7I", 1, W, H, Wo, Ho, C, records.shape[0]))
        f.write(f32(records).astype("<f4").tobytes())
        f.write(f32(image).astype("<f4").tobytes())


def read_case(path: Path):
    """Returns (W, H, Wo, Ho, records [n, 5 + C], image [Ho, Wo, C]) from a fixture file."""
    b = Path(path).read_bytes()
    assert b[:4] == b"GSRF"
    ver, W, H, Wo, Ho, C, n = struct.unpack("<7I", b[4:32])
    assert ver == 1
    rec = np.frombuffer(b, "<f4", n * (5 + C), 32).reshape(n, 5 + C)
    img = np.frombuffer(b, "<f4", Ho * Wo * C, 32 + 4 * n * (5 + C)).reshape(Ho, Wo, C)
    assert len(b) == 32 + 4 * (n * (5 + C) + Ho * Wo * C)
    return W, H, Wo, Ho, rec, img


def main(argv=None):
    ap = argparse.ArgumentParser(prog="gsimg-train fixtures", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/torch_render", help="folder (default: tests/fixtures/torch_render)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, C, W, H, Wo, Ho, cell, k) in enumerate(CASES):
        rng = np.random.default_rng(1000 + i)
        if cell is None:
            records, image = free_case(rng, C, W, H, Wo, Ho, k)
        else:
            records, image = anchored_case(rng, C, W, H, Wo, Ho, cell, k)
        ref = gr.reference_render(records.astype(np.float64), W, H, Wo, Ho)
        diff = float(np.abs(image - ref).max())
        assert diff <= 1e-5, (name, diff)
        path = out / f"case_{i}.bin"
        write_case(path, W, H, Wo, Ho, records, image)
        print(f"{path.name}: {name}: {W}x{H} -> {Wo}x{Ho}, C={C}, n={len(records)}, "
              f"{path.stat().st_size} bytes, max |f32 - float64 reference| = {diff:.2e}")


if __name__ == "__main__":
    main()
