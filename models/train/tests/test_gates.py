"""The presence gates' exact gradient (`train.py --exact-gates`): without the straight-through
gradient the render gives the presences none, and the worth term gives each presence exactly
minus what switching its gate changes in the loss, which re-rendering confirms for a present
and an absent Gaussian.

    python -m pytest models/train/tests/test_gates.py -q
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

os.environ.setdefault("GSRENDER_BACKEND", "torch")
from test_unroll import picture, small_model


def loss_of(m, q, img, mse_w):
    h, w = img.shape[-2:]
    out = m.render(q, w, h, w, h)
    return F.l1_loss(out, img) + mse_w * F.mse_loss(out, img)


def test_exact_gate_gradient():
    m, img, mse_w = small_model(), picture(), 10.0
    field = m.field(img).detach()
    field[:, -1, 8] = 0.25  # the last slot absent everywhere, the others as the model has them
    field.requires_grad_(True)
    q = m.quantize(field, gate_grad=False)
    loss = loss_of(m, q, img, mse_w)
    (g_render,) = torch.autograd.grad(loss, field, retain_graph=True)
    assert g_render[:, :, 8].abs().max().item() == 0.0  # no straight-through gradient
    assert g_render[:, :, :8].abs().max().item() > 0.0  # the other parameters still learn

    # the worth term of train.py: its value is zero and its gradient is −worth
    worth = m.gate_worth(q, img, mse_w)
    on = q[:, :, 8].detach() > 0.5
    t = (field[:, :, 8] * worth.detach()).sum()
    term = -(t - t.detach())
    assert term.item() == 0.0
    (g,) = torch.autograd.grad(term, field)
    assert torch.equal(g[:, :, 8], -worth)

    # worth against re-rendering with one gate switched, for a present and an absent slot
    assert on.any() and (~on).any()
    for idx in (on.nonzero()[0], (~on).nonzero()[0]):
        b, k, i, j = idx.tolist()
        flipped = q.detach().clone()
        flipped[b, k, 8, i, j] = 1.0 - flipped[b, k, 8, i, j]
        with torch.no_grad():
            base = loss_of(m, q.detach(), img, mse_w)
            other = loss_of(m, flipped, img, mse_w)
        # worth = loss(off) − loss(on)
        expect = (other - base) if on[b, k, i, j] else (base - other)
        assert abs(worth[b, k, i, j].item() - expect.item()) < 1e-6 + 1e-3 * abs(expect.item())
