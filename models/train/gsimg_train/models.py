"""gsimg's encoder networks: one convolution-only family, two operating points.

Both map an RGB image in [0, 1] to a field of grid-anchored 2D Gaussians (format-spec.md §3) and
export to ONNX with the contract of models/README.md: `image` [1, 3, H, W] → `gaussians`
[1, K, 9, H/c, W/c], per Gaussian (dx, dy, log2σ1, log2σ2, θ, R, G, B, presence), dx/dy being the
offset of the centre from its anchor cell's centre in input pixels.

* UpscaleNet (dense, c = 1, K = 4): an EDSR-style residual body at input resolution; four Gaussians
  per input pixel on a 2×2 sub-grid, each within 0.5 px (per axis) of its sub-cell centre (so within
  0.75 px of the pixel centre), σ ∈ [2^-6, 2^-1] px, free rotation, colour = input pixel + change.
  The field does not depend on the output scale.
* CompactNet (c = 8, K = 4): the same residual blocks after three stride-2 stages; each of the K
  Gaussians of a cell stays inside the cell, has a presence probability (≥ 0.5 keeps it) and is
  trained through the file's quantizers (straight-through rounding, `Quantizers`), so what the file
  stores is what was trained.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import gsrender as gr

# §4.1 colour model: full-range BT.601, as src/format/quant.rs.
RGB2YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCC2RGB = torch.tensor([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])


class ResBlock(nn.Module):
    def __init__(self, ch: int, res_scale: float = 1.0):
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.c2(F.relu(self.c1(x)))


class Body(nn.Module):
    """conv → N residual blocks → conv, with a long skip (EDSR without its upsampler)."""

    def __init__(self, cin: int, ch: int, blocks: int, res_scale: float = 1.0):
        super().__init__()
        self.head = nn.Conv2d(cin, ch, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(ch, res_scale) for _ in range(blocks)])
        self.tail = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return h + self.tail(self.blocks(h))


def ste(x, xq):
    """Straight-through: the value of xq, the gradient of x."""
    return x + (xq - x).detach()


# ------------------------------------------------------------------------------------------------
# upscale
# ------------------------------------------------------------------------------------------------
@dataclass
class UpscaleConfig:
    ch: int = 80
    blocks: int = 16
    sub_offset: float = 0.5  # max |offset| from the sub-cell centre, input px
    log2_sigma_min: float = -6.0
    log2_sigma_max: float = -1.0

    # derived, fixed by the 2×2 sub-grid
    cell: int = 1
    per_cell: int = 4
    multiple: int = 1


class UpscaleNet(nn.Module):
    kind = "upscale"

    def __init__(self, cfg: UpscaleConfig = UpscaleConfig()):
        super().__init__()
        self.cfg = cfg
        self.body = Body(3, cfg.ch, cfg.blocks)
        self.out = nn.Conv2d(cfg.ch, 4 * 8, 3, padding=1)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)
        # sub-grid offsets of the K = 4 Gaussians from the pixel centre: k = 2·row + column
        sub = torch.tensor([[-0.25, -0.25], [0.25, -0.25], [-0.25, 0.25], [0.25, 0.25]])
        self.register_buffer("sub", sub.view(1, 4, 2, 1, 1), persistent=False)

    @property
    def sigma_max(self):
        return 2.0 ** self.cfg.log2_sigma_max

    def raw(self, img):
        """Encoder (autocast-friendly): [B, 3, H, W] → [B, 4, 8, H, W] float32."""
        B, _, H, W = img.shape
        return self.out(self.body(img - 0.5)).float().view(B, 4, 8, H, W)

    def field(self, img, raw=None):
        """[B, 4, 9, H, W]: dx, dy (from the pixel centre), log2σ1, log2σ2, θ, R, G, B, presence."""
        c = self.cfg
        r = self.raw(img) if raw is None else raw
        off = self.sub + c.sub_offset * torch.tanh(r[:, :, 0:2])
        ls = c.log2_sigma_min + (c.log2_sigma_max - c.log2_sigma_min) * torch.sigmoid(r[:, :, 2:4])
        theta = r[:, :, 4:5]
        rgb = img.float().unsqueeze(1) + r[:, :, 5:8]
        pres = torch.ones_like(theta)
        return torch.cat([off, ls, theta, rgb, pres], 2)

    def forward(self, img):  # the ONNX graph
        return self.field(img)

    def render(self, field, out_w: int, out_h: int):
        """Renders a field at out_w × out_h (renderer (b), float32), via the half-pixel sub-grid."""
        B, K, _, H, W = field.shape
        f = field.float()
        # [B, 4, P, H, W] → [B, 1, P, 2H, 2W]: Gaussian k = 2·i + j sits in sub-cell (2y + i, 2x + j)
        f = f.view(B, 2, 2, 9, H, W).permute(0, 3, 4, 1, 5, 2).reshape(B, 1, 9, 2 * H, 2 * W)
        gy = torch.arange(H, device=f.device, dtype=f.dtype).repeat_interleave(2).view(1, 1, 2 * H, 1)
        gx = torch.arange(W, device=f.device, dtype=f.dtype).repeat_interleave(2).view(1, 1, 1, 2 * W)
        x = gx + 0.5 + f[:, :, 0]
        y = gy + 0.5 + f[:, :, 1]
        s1 = torch.exp2(f[:, :, 2])
        s2 = torch.exp2(f[:, :, 3])
        return gr.render_anchored(x, y, s1, s2, f[:, :, 4], f[:, :, 5:8], W, H, out_w, out_h,
                                  cell=0.5, o_max=self.cfg.sub_offset, sigma_max=self.sigma_max)

    def metadata(self):
        c = self.cfg
        return {"gsimg.kind": "upscale", "gsimg.cell": "1", "gsimg.per_cell": "4", "gsimg.multiple": "1",
                "gsimg.offset_max": repr(0.25 + c.sub_offset),
                "gsimg.log2_sigma_range": f"{c.log2_sigma_min!r},{c.log2_sigma_max!r}"}


# ------------------------------------------------------------------------------------------------
# compact
# ------------------------------------------------------------------------------------------------
@dataclass
class CompactConfig:
    cell: int = 8
    per_cell: int = 4
    stem: int = 32
    ch: int = 96
    blocks: int = 8
    # scale of every residual branch (EDSR uses 0.1 for wide stacks without normalization)
    res_scale: float = 1.0
    # quantizers (file HEAD, §5): positions, log2σ, rotation, YCbCr channels
    pos_bits: int = 5
    scale_bits: int = 5
    scale_min: float = -2.0  # log2 σ, input px
    scale_max: float = 2.25
    rot_bits: int = 5
    color_bits: tuple = (8, 6, 6)
    color_min: tuple = (0.0, -0.5, -0.5)
    color_max: tuple = (1.0, 0.5, 0.5)
    # cell 16 only: channels of the 1/8-resolution stage before the last stride-2 stage
    mid: int = 96

    @property
    def multiple(self):
        return self.cell

    def bits_per_gaussian(self):
        return 2 * self.pos_bits + 2 * self.scale_bits + self.rot_bits + sum(self.color_bits)


class CompactNet(nn.Module):
    kind = "compact"

    def __init__(self, cfg: CompactConfig = CompactConfig()):
        super().__init__()
        assert cfg.cell in (8, 16), "cells of 8 or 16 pixels"
        self.cfg = cfg
        s, ch = cfg.stem, cfg.ch
        rs = cfg.res_scale
        self.stem = nn.Sequential(nn.Conv2d(3, s, 3, padding=1), ResBlock(s, rs), ResBlock(s, rs))
        c8 = ch if cfg.cell == 8 else cfg.mid
        self.down = nn.Sequential(
            nn.Conv2d(s, 2 * s, 3, stride=2, padding=1), nn.ReLU(), ResBlock(2 * s, rs),
            nn.Conv2d(2 * s, 4 * s, 3, stride=2, padding=1), nn.ReLU(), ResBlock(4 * s, rs),
            nn.Conv2d(4 * s, c8, 3, stride=2, padding=1))
        # cell 16: one more stride-2 stage (a residual block at 1/8 first), the body at 1/16
        self.down16 = None if cfg.cell == 8 else nn.Sequential(
            nn.ReLU(), ResBlock(c8, rs), nn.Conv2d(c8, ch, 3, stride=2, padding=1))
        self.body = Body(ch, ch, cfg.blocks, rs)
        self.body.head = nn.Conv2d(ch + 3, ch, 3, padding=1)  # also sees the cell's mean colour
        K = cfg.per_cell
        self.out = nn.Conv2d(ch, K * 9, 3, padding=1)
        nn.init.normal_(self.out.weight, std=1e-3)
        with torch.no_grad():
            self.out.bias.copy_(self.initial_bias(K, cfg).view(-1))
        self.register_buffer("rgb2ycc", RGB2YCC.clone(), persistent=False)
        self.register_buffer("ycc2rgb", YCC2RGB.clone(), persistent=False)
        self.clipped_colour_ste = False  # training option (train.py --clipped-colour-ste)

    def colour_excess(self, field):
        """Mean squared distance of the colours (YCbCr, each channel's range scaled to [0, 1])
        outside the file's ranges: a penalty that pulls drifting colours back."""
        c = self.cfg
        ycc = torch.einsum("ij,bkjhw->bkihw", self.rgb2ycc, field[:, :, 5:8].float())
        lo = torch.tensor(c.color_min, device=ycc.device).view(1, 1, 3, 1, 1)
        hi = torch.tensor(c.color_max, device=ycc.device).view(1, 1, 3, 1, 1)
        u = (ycc - lo) / (hi - lo)
        return (F.relu(u - 1.0).square() + F.relu(-u).square()).mean()

    @staticmethod
    def initial_bias(K: int, cfg: CompactConfig) -> torch.Tensor:
        """Head bias [K, 9] at the start: the first four Gaussians on the cell's quadrants
        (frac = 0.5 + 0.5·tanh: ±0.25 cell ↔ tanh ±0.5) and present, any further ones absent, so
        that presence has slots to turn on where the content needs more. Cell 8: the further
        slots on the edge midpoints (then the quadrants again). Cell 16: on a 4 × 4 lattice
        (±1/8 and ±3/8 of the cell), then the edge midpoints, then the lattice again, with a
        smaller σ than the four present ones (detail slots)."""
        b = torch.zeros(K, 9)
        if cfg.cell == 8:
            pts = torch.tensor([[-1, -1], [1, -1], [-1, 1], [1, 1], [0, -1], [1, 0], [0, 1], [-1, 0]],
                               dtype=torch.float32) * 0.5
            pts = pts[torch.arange(K) % 8]
            ls = torch.full((K,), 1.5)  # σ ≈ 2.8 px: four Gaussians cover the cell
        else:
            quad = [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]
            lat = [[x, y] for y in (-0.75, -0.25, 0.25, 0.75) for x in (-0.75, -0.25, 0.25, 0.75)]
            edge = [[0, -0.5], [0.5, 0], [0, 0.5], [-0.5, 0]]
            rest = lat + edge
            pts = torch.tensor(quad + [rest[i % len(rest)] for i in range(max(0, K - 4))],
                               dtype=torch.float32)[:K]
            # σ ≈ 5.7 px for the four present ones, 2 px for the detail slots
            ls = torch.where(torch.arange(K) < 4, 2.5, 1.0)
        b[:, 0:2] = torch.atanh(pts)
        # log2σ as a point of [min, max]
        u = ((ls - cfg.scale_min) / (cfg.scale_max - cfg.scale_min)).clamp(1e-3, 1 - 1e-3)
        b[:, 2:4] = torch.log(u / (1 - u)).unsqueeze(1)
        b[:, 8] = torch.where(torch.arange(K) < 4, 2.0, -2.0)
        return b

    @property
    def sigma_max(self):
        return 2.0 ** self.cfg.scale_max

    @torch.no_grad()
    def init_from(self, state: dict, cfg: dict):
        """Warm start from another compact model's weights (e.g. fewer Gaussians per cell or
        another σ range): the encoder is copied; head slot k takes slot k mod K_old's weights,
        with this model's initial bias for slots beyond K_old and its log2σ bias re-centred so a
        copied slot starts at the σ it had."""
        own = self.state_dict()
        # a residual branch's last conv scaled so that branch · res_scale is unchanged
        gain = float(cfg.get("res_scale", 1.0)) / self.cfg.res_scale
        for k, v in state.items():
            if not k.startswith("out.") and k in own and own[k].shape == v.shape:
                own[k].copy_(v * gain if ".c2." in k else v)
        k_old = int(cfg["per_cell"])
        K = self.cfg.per_cell
        w_old = state["out.weight"].view(k_old, 9, *state["out.weight"].shape[1:])
        b_old = state["out.bias"].view(k_old, 9)
        w = own["out.weight"].view(K, 9, *w_old.shape[2:])
        b = own["out.bias"].view(K, 9)
        init = self.initial_bias(K, self.cfg)
        for k in range(K):
            w[k].copy_(w_old[k % k_old])
            b[k].copy_(b_old[k % k_old] if k < k_old else init[k])
        # log2σ = lo + (hi − lo)·sigmoid(r): keep σ at the old mapping's value at r = bias
        lo0, hi0 = float(cfg["scale_min"]), float(cfg["scale_max"])
        lo, hi = self.cfg.scale_min, self.cfg.scale_max
        for k in range(min(K, k_old)):
            ls = lo0 + (hi0 - lo0) * torch.sigmoid(b_old[k, 2:4])
            u = ((ls - lo) / (hi - lo)).clamp(1e-3, 1 - 1e-3)
            b[k, 2:4] = torch.log(u / (1 - u))

    def raw(self, img):
        B, _, H, W = img.shape
        c, K = self.cfg.cell, self.cfg.per_cell
        mean = F.avg_pool2d(img, c)
        h = self.down(self.stem(img - 0.5))
        if self.down16 is not None:
            h = self.down16(h)
        h = self.body(torch.cat([h, mean.to(h.dtype) - 0.5], 1))
        return self.out(h).float().view(B, K, 9, H // c, W // c), mean.float()

    def field(self, img, raw=None):
        """Continuous field [B, K, 9, Hc, Wc] (what the ONNX graph outputs; the file quantizes it)."""
        c = self.cfg
        r, mean = self.raw(img) if raw is None else raw
        half = 0.5 * (1.0 - 2.0 ** -(c.pos_bits + 1))  # keeps frac inside (0, 1), off the edges
        off = c.cell * half * torch.tanh(r[:, :, 0:2])
        ls = c.scale_min + (c.scale_max - c.scale_min) * torch.sigmoid(r[:, :, 2:4])
        theta = r[:, :, 4:5]
        theta = theta - math.pi * torch.floor(theta / math.pi)  # [0, π)
        rgb = mean.unsqueeze(1) + r[:, :, 5:8]
        pres = torch.sigmoid(r[:, :, 8:9])
        return torch.cat([off, ls, theta, rgb, pres], 2)

    def quantize(self, field, hard_presence: bool = True, gate_grad: bool = True):
        """The field as the file stores it (dequantized values, straight-through gradients), with
        colours as the decoder computes them (YCbCr codes → RGB) and the presence gate
        (`gate_grad` False: the hard gate without the straight-through gradient, for a caller
        that gives the presence its own gradient, `train.py --exact-gates`)."""
        c = self.cfg
        n = 2 ** c.pos_bits
        frac = field[:, :, 0:2] / c.cell + 0.5
        fq = (torch.clamp(torch.floor(frac * n), 0, n - 1) + 0.5) / n
        off = (ste(frac, fq) - 0.5) * c.cell
        ms = 2 ** c.scale_bits - 1
        u = (field[:, :, 2:4] - c.scale_min) / (c.scale_max - c.scale_min)
        ls = c.scale_min + (c.scale_max - c.scale_min) * ste(u, torch.clamp(torch.round(u * ms), 0, ms) / ms)
        nr = 2 ** c.rot_bits
        th = field[:, :, 4:5]
        thq = math.pi * torch.remainder(torch.round(th / math.pi * nr), nr) / nr
        th = ste(th, thq)
        ycc = torch.einsum("ij,bkjhw->bkihw", self.rgb2ycc, field[:, :, 5:8])
        chans = []
        for i in range(3):
            lo, hi, m = c.color_min[i], c.color_max[i], 2 ** c.color_bits[i] - 1
            u = (ycc[:, :, i:i + 1] - lo) / (hi - lo)
            # the file clamps to the range; a gradient passed through that clamp pushes a value
            # that is already out of range further out with no effect on the loss (a drift
            # Adam turns into full-size steps), so optionally cut it there (clipped STE)
            g = u.clamp(0.0, 1.0) if self.clipped_colour_ste else u
            chans.append(lo + (hi - lo) * ste(g, torch.clamp(torch.round(u * m), 0, m) / m))
        rgb = torch.einsum("ij,bkjhw->bkihw", self.ycc2rgb, torch.cat(chans, 2))
        p = field[:, :, 8:9]
        if not hard_presence:
            gate = p
        elif gate_grad:
            gate = ste(p, (p >= 0.5).to(p.dtype))
        else:
            gate = (p >= 0.5).to(p.dtype).detach()
        return torch.cat([off, ls, th, rgb, gate], 2)

    def forward(self, img):  # the ONNX graph
        return self.field(img)

    def _anchored(self, f):
        """A field's Gaussians as `gsrender` takes them: centres x, y, σ1, σ2, θ, colours."""
        c = self.cfg
        Hc, Wc = f.shape[-2:]
        gy = torch.arange(Hc, device=f.device, dtype=f.dtype).view(1, 1, Hc, 1)
        gx = torch.arange(Wc, device=f.device, dtype=f.dtype).view(1, 1, 1, Wc)
        x = (gx + 0.5) * c.cell + f[:, :, 0]
        y = (gy + 0.5) * c.cell + f[:, :, 1]
        return x, y, torch.exp2(f[:, :, 2]), torch.exp2(f[:, :, 3]), f[:, :, 4], f[:, :, 5:8]

    def render(self, qfield, out_w: int, out_h: int, width: int, height: int):
        """Renders a (quantized) field; presence multiplies the weights (0 removes a Gaussian)."""
        c = self.cfg
        f = qfield.float()
        return gr.render_anchored(*self._anchored(f), width, height, out_w, out_h, cell=float(c.cell),
                                  o_max=c.cell / 2, sigma_max=self.sigma_max, amp_scale=f[:, :, 8])

    @torch.no_grad()
    def gate_worth(self, q, img, mse_w: float):
        """For every slot of a quantized field, what its gate is worth: the loss
        mean(|e| + mse_w·e²) (e = render − img) with the gate off minus with it on, all other
        gates as they are; positive when the picture is better with the Gaussian
        (`gsrender.toggle_costs`, exact as the render is). [B, K, Hc, Wc]."""
        c = self.cfg
        f = q.detach().float()
        cost = gr.toggle_costs(*self._anchored(f), f[:, :, 8], img, cell=float(c.cell), o_max=c.cell / 2,
                               sigma_max=self.sigma_max, mse_w=mse_w)
        # toggle_costs: the change in the sum when the gate is switched from its state
        return torch.where(f[:, :, 8] > 0.5, cost, -cost) / img.numel()

    def refine_unrolled(self, q, img, steps: int, rates, exact: bool = False):
        """What a few steps of per-picture refinement make of a (quantized) field, kept
        differentiable so that the network can be trained on it (`train.py --unroll`).

        Like gsimg's refinement (`src/encode/optim/refine.rs`: Adam on positions, log2σ,
        rotation and colour against the picture's squared error), but with `steps` plain descent
        steps whose
        size per group (`rates`: position px, log2σ, radians, colour) saturates smoothly:
        Δ = −rate·g / sqrt(g² + rms²), rms over the picture's values of the group, so a step is
        at most `rate` and scale-free like Adam's first steps. Offsets stay within their cell and
        log2σ within the file's range (the render's window bound); the presence gates are kept.

        `exact=False` (first order): the steps are taken as constants, so the loss on the result
        reaches the field through the identity (the gradient at the refined point), with any
        backend and the memory of `steps + 1` renders. `exact=True` differentiates through the
        steps too (second derivatives; PyTorch backend, since the Triton backward cannot be
        differentiated again): on the CPU a 128² picture took 7 GB at one step and 12 GB at two.
        Returns the refined render [B, 3, H, W].
        """
        c = self.cfg
        H, W = img.shape[-2:]
        gate = q[:, :, 8:9]
        groups = ((0, 2), (2, 4), (4, 5), (5, 8))
        lim = c.cell * 0.5 * (1.0 - 2.0 ** -(c.pos_bits + 1))
        p = q[:, :, 0:8]
        with gr.use_backend("torch") if exact else contextlib.nullcontext():
            for _ in range(steps):
                # first order: the step's own graph is cut from the network's (a backward through
                # the gates would free buffers the training loss still needs)
                at = p if exact else p.detach().requires_grad_(True)
                with torch.enable_grad():
                    err = (self.render(torch.cat([at, gate if exact else gate.detach()], 2), W, H, W, H)
                           - img).square().sum()
                    g, = torch.autograd.grad(err, at, create_graph=exact)
                parts = []
                for (a, b), r in zip(groups, rates):
                    gi = g[:, :, a:b]
                    rms = gi.square().mean(dim=(1, 2, 3, 4), keepdim=True).sqrt().detach() + 1e-12
                    parts.append(p[:, :, a:b] - r * gi / torch.sqrt(gi.square() + rms.square()))
                off = parts[0].clamp(-lim, lim)
                ls = parts[1].clamp(c.scale_min, c.scale_max)
                p = torch.cat([off, ls, parts[2], parts[3]], 2)
            return self.render(torch.cat([p, gate], 2), W, H, W, H)

    def metadata(self):
        c = self.cfg
        j = lambda v: ",".join(repr(float(x)) if isinstance(x, float) else str(x) for x in v)  # noqa: E731
        return {"gsimg.kind": "compact", "gsimg.cell": str(c.cell), "gsimg.per_cell": str(c.per_cell),
                "gsimg.multiple": str(c.cell), "gsimg.pos_bits": str(c.pos_bits),
                "gsimg.scale_bits": str(c.scale_bits), "gsimg.scale_min": repr(c.scale_min),
                "gsimg.scale_max": repr(c.scale_max), "gsimg.rot_bits": str(c.rot_bits),
                "gsimg.color_bits": j(c.color_bits), "gsimg.color_min": j(c.color_min),
                "gsimg.color_max": j(c.color_max), "gsimg.color_model": "ycbcr-bt601-full"}


def build(kind: str, cfg: dict | None = None):
    if kind == "upscale":
        return UpscaleNet(UpscaleConfig(**(cfg or {})))
    if kind == "compact":
        d = dict(cfg or {})
        for k in ("color_bits", "color_min", "color_max"):
            if k in d:
                d[k] = tuple(d[k])
        return CompactNet(CompactConfig(**d))
    raise ValueError(kind)


def config_dict(model) -> dict:
    return asdict(model.cfg)


def receptive_field(model, size: int = 160) -> int:
    """Pixels of context on each side that one output cell depends on, measured: the extent of the
    input gradient of the centre cell's outputs (exact zeros outside the receptive field)."""
    m = model.float().eval()
    x = torch.zeros(1, 3, size, size, dtype=torch.float32, requires_grad=True)
    out = m(x)
    c = m.cfg.cell
    hc, wc = out.shape[-2] // 2, out.shape[-1] // 2
    out[..., hc, wc].abs().sum().backward()
    g = x.grad.abs().sum((0, 1))
    ys, xs = torch.nonzero(g > 0, as_tuple=True)
    lo = min(int(ys.min()), int(xs.min()))
    hi = max(int(ys.max()), int(xs.max()))
    cell_lo, cell_hi = hc * c, hc * c + c - 1
    assert lo > 0 and hi < size - 1, "receptive field larger than the probe"
    return max(cell_lo - lo, hi - cell_hi)
