"""What a compact checkpoint's gates and colours look like on real pictures.

    gsimg-train presence-stats models/ckpt/compact.pt PICTURE...

For each picture (whole, cropped to a multiple of the cell): the share of slots present at
threshold 0.5 with the network in float32 and under bfloat16 autocast (as trained), and the
share of present Gaussians whose Y, Cb or Cr lies outside the file's ranges (with the largest
such value). Then, over all pictures, a histogram of the presence logits. CPU only.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
from PIL import Image

from . import checkpoint as C

EDGES = [-99, -4.5, -4.0, -3, -2, -1, -0.5, -0.2, -0.1, -0.05, -0.02, 0, 0.02, 0.05, 0.1, 0.5, 1, 2, 4, 99]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit("usage: gsimg-train presence-stats CHECKPOINT PICTURE...")
    m, ck = C.load_ema(argv[0])
    m.eval()
    c = m.cfg
    logits = []
    for path in argv[1:]:
        a = np.array(Image.open(path).convert("RGB"))
        h, w = a.shape[0] // c.cell * c.cell, a.shape[1] // c.cell * c.cell
        x = torch.from_numpy(a[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            r32, mean = m.raw(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                r16, _ = m.raw(x)
            f = m.field(x, (r32, mean))
        present = f[:, :, 8] >= 0.5
        ycc = torch.einsum("ij,bkjhw->bkihw", m.rgb2ycc, f[:, :, 5:8])
        out = []
        for i, name in enumerate("Y Cb Cr".split()):
            u = ((ycc[:, :, i] - c.color_min[i]) / (c.color_max[i] - c.color_min[i]))[present]
            bad = (u < 0) | (u > 1)
            worst = float(ycc[:, :, i][present][bad].abs().max()) if bad.any() else float("nan")
            out.append(f"{name} out of range {bad.float().mean():.3f} (largest |value| {worst:.2f})")
        print(f"{os.path.basename(path)}: present fp32 {(r32[:, :, 8] >= 0).float().mean():.4f}, "
              f"bf16 {(r16[:, :, 8].float() >= 0).float().mean():.4f}; " + "; ".join(out))
        logits.append(r32[:, :, 8].flatten())
    lg = torch.cat(logits)
    print("presence logits over all pictures:")
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        print(f"  [{lo:6}, {hi:6})  {((lg >= lo) & (lg < hi)).float().mean():.4f}")


if __name__ == "__main__":
    main()
