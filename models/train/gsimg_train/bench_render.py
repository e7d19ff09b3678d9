"""Throughput of the training renderer (b): forward + backward of the upscale model's render at
training shapes (batch 32, 48×48 input, K = 4 on the half-pixel grid), Triton vs plain PyTorch.

    gsimg-train bench-render
"""
import os
import time

import torch

from . import models as M


def bench(backend, scale, B=32, P=48, reps=10):
    os.environ["GSRENDER_BACKEND"] = backend
    m = M.UpscaleNet().cuda()
    img = torch.rand(B, 3, P, P, device="cuda")
    raw = (torch.randn(B, 4, 8, P, P, device="cuda") * 0.5).requires_grad_(True)
    out_side = int(round(P * scale))
    ts = []
    for i in range(reps + 3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = m.render(m.field(img, raw), out_side, out_side)
        out.mean().backward()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    ts = sorted(ts[3:])
    return ts[len(ts) // 2] * 1e3, out_side


def main(argv=None):
    if argv:
        raise SystemExit("usage: gsimg-train bench-render   (no arguments; needs a CUDA GPU)")
    if not torch.cuda.is_available():
        raise SystemExit("gsimg-train bench-render: needs a CUDA GPU")
    print(torch.cuda.get_device_name())
    for s in (2.0, 4.0, 8.0):
        for be in ("triton", "torch"):
            try:
                ms, side = bench(be, s, reps=10 if be == "triton" else 3)
                evals = 32 * side * side * 81
                print(f"render fwd+bwd x{s:g} ({side}^2 out, batch 32) {be}: {ms:.2f} ms "
                      f"({evals / ms / 1e6:.1f} G Gaussian-pixel pairs/s)")
            except Exception as e:  # noqa: BLE001
                print(f"{be} x{s}: failed: {e}")
