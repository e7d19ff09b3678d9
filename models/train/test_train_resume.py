"""A resumed compact training call keeps the loss settings of its checkpoint (rate target and
loss switches), and an explicit flag that differs overrides them with a warning; a checkpoint
without raw weights (EMA only) resumes from its EMA weights.

    GSRENDER_BACKEND=torch .venv/bin/python -m pytest models/train/test_train_resume.py -q

Runs `train.py` for a few steps on the CPU on synthetic pictures (no training data needed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TRAIN = Path(__file__).resolve().parent / "train.py"


def run(args, tmp):
    env = {**os.environ, "GSRENDER_BACKEND": "torch", "PYTHONUNBUFFERED": "1"}
    common = ["--model", "compact", "--data", str(tmp / "data"), "--minutes", "3", "--log-every", "1",
              "--val-every", "1000", "--batch", "1", "--patch", "64", "--save-every-min", "100"]
    r = subprocess.run([sys.executable, str(TRAIN), *common, *args], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_resume_keeps_the_loss_settings(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        d = tmp_path / "data" / split
        d.mkdir(parents=True)
        for i in range(n):
            a = (rng.random((144, 160, 3)) * 255).astype(np.uint8)
            Image.fromarray(a).save(d / f"{i}.png")
    config = '{"ch": 16, "blocks": 1, "stem": 8}'
    first = tmp_path / "first"
    out = run(["--out", str(first), "--max-steps", "2", "--config", config, "--target-presence", "0.125",
               "--clipped-colour-ste", "--colour-range-penalty", "0.1", "--logit-margin", "4",
               "--dual-step", "1e-3", "--logit-deadzone", "1", "--unroll", "2"],
              tmp_path)
    # the unrolled refinement ran: its loss in the log, its PSNR in the final validation
    assert '"l1_refined"' in out and '"val_psnr_refined"' in out
    ck = torch.load(first / "compact.pt", map_location="cpu", weights_only=False)
    assert ck["target_presence"] == 0.125
    assert ck["loss_args"]["clipped_colour_ste"] is True and ck["loss_args"]["logit_margin"] == 4.0
    assert ck["loss_args"]["logit_deadzone"] == 1.0 and ck["loss_args"]["deadzone_penalty"] == 1e-2
    assert ck["loss_args"]["unroll"] == 2 and ck["loss_args"]["unroll_rates"] == "0.2,0.04,0.04,0.02"

    # resumed without any of the flags: all kept
    second = tmp_path / "second"
    out = run(["--resume", str(first / "compact.pt"), "--out", str(second), "--max-steps", "1"], tmp_path)
    assert "warning" not in out
    ck2 = torch.load(second / "compact.pt", map_location="cpu", weights_only=False)
    assert ck2["target_presence"] == 0.125
    assert ck2["loss_args"] == ck["loss_args"]

    # an explicit different value wins, and says so
    third = tmp_path / "third"
    out = run(["--resume", str(first / "compact.pt"), "--out", str(third), "--max-steps", "1",
               "--logit-margin", "3", "--no-clipped-colour-ste"], tmp_path)
    assert "--logit-margin is 3.0 in this call, 4.0 in the checkpoint" in out
    assert "--clipped-colour-ste is False in this call, True in the checkpoint" in out
    ck3 = torch.load(third / "compact.pt", map_location="cpu", weights_only=False)
    assert ck3["loss_args"]["logit_margin"] == 3.0 and ck3["loss_args"]["clipped_colour_ste"] is False

    # an EMA-only copy (pack_chunk.sh EMA_ONLY: no raw weights) resumes from the EMA weights: with
    # lr 0 the raw weights stay where they started, so they still equal the EMA after a step
    slim = tmp_path / "slim.pt"
    torch.save({k: v for k, v in ck.items() if k != "model_delta"}, slim)
    fourth = tmp_path / "fourth"
    out = run(["--resume", str(slim), "--out", str(fourth), "--max-steps", "1", "--lr", "0"], tmp_path)
    assert "no raw weights in the checkpoint" in out
    ck4 = torch.load(fourth / "compact.pt", map_location="cpu", weights_only=False)
    assert ck4["step"] == ck["step"] + 1
    for k, d in ck4["model_delta"].items():
        if d.is_floating_point():
            # (the EMA update's own rounding: ~1e-9; weights from anywhere else: ~1e-1)
            assert d.abs().max().item() < 1e-6, k
            assert torch.allclose(ck4["ema"][k], ck["ema"][k], atol=1e-6), k


def test_exact_gates_run(tmp_path):
    """`--exact-gates` trains (the worth term in the loop), logs the exact verdict's disagreement
    with the gates and is kept in the checkpoint."""
    rng = np.random.default_rng(1)
    for split, n in (("train", 1), ("val", 1)):
        d = tmp_path / "data" / split
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((96, 112, 3)) * 255).astype(np.uint8)).save(d / f"{i}.png")
    out = run(["--out", str(tmp_path / "o"), "--max-steps", "2", "--config", '{"ch": 16, "blocks": 1, "stem": 8}',
               "--exact-gates"], tmp_path)
    assert '"toggle_off"' in out and '"toggle_on"' in out
    ck = torch.load(tmp_path / "o" / "compact.pt", map_location="cpu", weights_only=False)
    assert ck["loss_args"]["exact_gates"] is True and ck["step"] == 2
