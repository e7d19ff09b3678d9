"""The compact model's unrolled refinement (`CompactNet.refine_unrolled`, `train.py --unroll`):
zero step sizes change nothing, the first-order and exact steps give the same picture, the steps
lower the picture's error, and the loss on the refined picture reaches the network's weights
(at the refined point; with exact=True also through the steps, by second derivatives).

    python -m pytest models/train/tests/test_unroll.py -q
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gsimg_train import gsrender as gr
from gsimg_train import models as M


def small_model():
    torch.manual_seed(0)
    return M.build("compact", {"stem": 8, "ch": 16, "blocks": 1}).eval()


def picture(h=32, w=40):
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    r = 0.5 + 0.4 * torch.sin(6 * x + 2 * y)
    g = (x > 0.5).float() * 0.6 + 0.2
    b = 0.3 + 0.5 * y
    return torch.stack([r, g, b])[None]


def test_zero_steps_change_nothing():
    m, img = small_model(), picture()
    q = m.quantize(m.field(img))
    h, w = img.shape[-2:]
    plain = m.render(q, w, h, w, h)
    same = m.refine_unrolled(q, img, 3, (0.0, 0.0, 0.0, 0.0))
    assert torch.equal(plain, same)


def test_exact_and_first_order_steps_agree_forward():
    m, img = small_model(), picture()
    q = m.quantize(m.field(img)).detach().requires_grad_(True)
    rates = (0.4, 0.08, 0.08, 0.04)
    a = m.refine_unrolled(q, img, 2, rates)
    b = m.refine_unrolled(q, img, 2, rates, exact=True)
    assert (a - b).abs().max().item() < 1e-5


def test_steps_lower_the_error():
    m, img = small_model(), picture()
    q = m.quantize(m.field(img)).detach().requires_grad_(True)
    h, w = img.shape[-2:]
    before = F.mse_loss(m.render(q, w, h, w, h), img).item()
    after = [F.mse_loss(m.refine_unrolled(q, img, k, (0.2, 0.04, 0.04, 0.02)), img).item() for k in (1, 4)]
    assert after[0] < before and after[1] < after[0], (before, after)


@pytest.mark.parametrize("exact", [False, True])
def test_gradient_reaches_the_weights_through_the_steps(exact):
    m, img = small_model(), picture()
    m.train()
    q = m.quantize(m.field(img))
    ref = m.refine_unrolled(q, img, 2, (0.8, 0.16, 0.16, 0.08), exact=exact)
    F.l1_loss(ref, img).backward()
    g_unrolled = m.out.weight.grad.clone()
    assert torch.isfinite(g_unrolled).all() and g_unrolled.abs().sum() > 0
    m.zero_grad()
    h, w = img.shape[-2:]
    F.l1_loss(m.render(m.quantize(m.field(img)), w, h, w, h), img).backward()
    g_plain = m.out.weight.grad
    # not the feed-forward gradient: taken at the refined point (and, exact, through the steps)
    assert not torch.allclose(g_unrolled, g_plain)
    cos = F.cosine_similarity(g_unrolled.flatten(), g_plain.flatten(), 0).item()
    assert math.isfinite(cos) and cos < 0.999


def test_use_backend_is_restored():
    before = gr.splat_backend("cpu")
    with gr.use_backend("torch"):
        assert gr.splat_backend("cpu") == "torch"
    assert gr.splat_backend("cpu") == before
