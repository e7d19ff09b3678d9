"""How good can the upscale model's representation be? Optimizes the network's raw output per
picture (its field: 4 Gaussians per LR pixel with the model's offset and σ bounds) against the
HR picture, and prints the network's PSNR next to the optimized one.

    GSRENDER_BACKEND=torch gsimg-train oracle-upscale models/ckpt/upscale.pt DATA_DIR --scale 4 --steps 200 --count 14

DATA_DIR holds a `val/` folder of pictures (e.g. a copy of `data/val`: validation pictures
only). Each is centre-cropped to 192², cropped to a multiple of the scale and downscaled as in
training; RGB PSNR of the render clamped to [0, 1].
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as C
from . import data as T


def main(argv=None):
    ap = argparse.ArgumentParser(prog="gsimg-train oracle-upscale", description="How far per-picture optimisation of an upscale model's raw field gets")
    ap.add_argument("ckpt")
    ap.add_argument("data")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--count", type=int, default=14)
    ap.add_argument("--lr", type=float, default=0.02, help="Adam step on the raw outputs")
    a = ap.parse_args(argv)
    model, ck = C.load_ema(a.ckpt)
    model.eval()
    imgs, names = T.load_images(a.data)
    s = a.scale
    rows = []
    for arr, name in list(zip(imgs["val"], names["val"]))[:a.count]:
        hr = torch.from_numpy(T.center_crop(arr, 192).copy()).permute(2, 0, 1)[None].float().div(255)
        h, w = hr.shape[2] // s * s, hr.shape[3] // s * s
        hr = hr[:, :, :h, :w]
        lr = T.downscale(hr, h // s, w // s)
        with torch.no_grad():
            raw = model.raw(lr).clone()
        raw.requires_grad_(True)
        opt = torch.optim.Adam([raw], lr=a.lr)

        def render():
            return model.render(model.field(lr, raw), w, h)

        with torch.no_grad():
            before = T.psnr(render().clamp(0, 1), hr)
        for _ in range(a.steps):
            loss = F.mse_loss(render(), hr)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = T.psnr(render().clamp(0, 1), hr)
        rows.append((before, after))
        print(f"x{s} {name}: network {before:.2f} dB, optimized field {after:.2f} dB", flush=True)
    b, o = np.array(rows).T
    print(f"mean over {len(rows)}: network {b.mean():.2f} dB, optimized field {o.mean():.2f} dB")


if __name__ == "__main__":
    main()
