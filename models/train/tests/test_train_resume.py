"""The training command: a run stopped part way (by its step limit or by SIGTERM) and resumed ends
bit for bit where an uninterrupted run ends; a resume with another configuration or other
pictures is refused unless forced; phases switch settings at their step; a complete run is not
trained again.

    python -m pytest models/train/tests/test_train_resume.py -q

Tiny models on synthetic pictures, on the CPU with the plain PyTorch renderer.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gsimg_train import cli

ENV = {**os.environ, "GSRENDER_BACKEND": "torch", "PYTHONUNBUFFERED": "1"}

COMPACT = """
model = "compact"
seed = 3
[data]
path = "{data}"
[arch]
cell = 8
per_cell = 4
stem = 8
ch = 16
blocks = 1
[optim]
lr = 1e-3
batch = 2
patch = 32
warmup = 2
schedule_steps = 12
steps = {steps}
[loss]
mse_weight = 10.0
target_presence = 0.25
dual_step = 1e-2
clipped_colour_ste = true
colour_range_penalty = 0.1
logit_margin = 4.0
[run]
log_every = 1
val_every = 3
save_every = 2
[[phase]]
from_step = 4
loss = {{ exact_gates = true }}
"""

UPSCALE = """
model = "upscale"
[data]
path = "{data}"
[arch]
ch = 8
blocks = 1
[optim]
batch = 2
patch = 12
warmup = 2
schedule_steps = 100
steps = 5
[run]
log_every = 1
val_every = 100
save_every = 100
[[phase]]
from_step = 2
reset_optimizer = true
rewarm = 2
anneal = true
"""


def pictures(root: Path, seed: int = 0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", 2), ("val", 1)):
        d = root / split
        d.mkdir(parents=True)
        for i in range(n):
            # smooth colour fields plus noise: something for the gates to decide about
            y, x = np.mgrid[0:72, 0:88] / 40.0
            a = np.stack([np.sin(x * (i + 1) + c) * np.cos(y * (c + 1)) for c in range(3)], -1)
            a = (a * 0.4 + 0.5 + rng.normal(0, 0.05, a.shape)).clip(0, 1)
            Image.fromarray((a * 255).astype(np.uint8)).save(d / f"{i}.png")


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def gsimg_train(*args, check=True):
    """The command line, in this process (a fresh interpreter per call would cost seconds each)."""
    os.environ["GSRENDER_BACKEND"] = "torch"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    r = Result(code, out.getvalue(), err.getvalue())
    if check:
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-2500:]
    return r


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    pictures(tmp / "data")
    cfg = tmp / "tiny.toml"
    cfg.write_text(COMPACT.format(data=tmp / "data", steps=8))
    # the reference: one uninterrupted run
    gsimg_train("train", cfg, "--out", tmp / "whole", "--quiet")
    return tmp, cfg, torch.load(tmp / "whole" / "checkpoint.pt", map_location="cpu", weights_only=False)


def assert_same_state(a: dict, b: dict):
    assert a["step"] == b["step"] and a["complete"] and b["complete"]
    assert a["lambda"] == b["lambda"]
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[i][k], sb[i][k]), f"optimizer {i}.{k}"
    assert torch.equal(a["rng"]["gen"], b["rng"]["gen"]) and torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_stopped_and_resumed_matches_uninterrupted(setup):
    tmp, cfg, whole = setup
    assert whole["step"] == 8 and whole["complete"]
    out = tmp / "pieces"
    gsimg_train("train", cfg, "--out", out, "--stop-after", 3, "--quiet")  # stops between two saves
    mid = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert mid["step"] == 3 and not mid["complete"]
    gsimg_train("train", cfg, "--out", out, "--stop-after", 2, "--quiet")  # across the phase at step 4
    gsimg_train("train", cfg, "--out", out, "--quiet")
    assert_same_state(whole, torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False))
    events = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e.get("event") == "resume"] == [3, 5]
    # the phase switched the exact gate gradients on at step 4: their verdict is logged from then on
    steps = {e["step"]: e for e in events if "loss" in e}
    assert "toggle_off" not in steps[4] and "toggle_off" in steps[5]
    # a complete run is left alone
    r = gsimg_train("train", cfg, "--out", out)
    assert "complete at step 8" in r.stdout


def test_sigterm_saves_and_resumes(setup):
    tmp, _, _ = setup
    cfg = tmp / "long.toml"
    cfg.write_text(COMPACT.format(data=tmp / "data", steps=10))
    out = tmp / "signalled"
    p = subprocess.Popen([sys.executable, "-m", "gsimg_train", "train", str(cfg), "--out", str(out), "--quiet"],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if log.exists() and '"loss"' in log.read_text():
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=240)
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    ck = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert 1 <= ck["step"] < 10 and not ck["complete"]
    assert '"stopped"' in log.read_text()
    assert not list(out.glob(".*.tmp")), "no temporary checkpoint left behind"
    # resumed to the end, it matches a run that never stopped
    gsimg_train("train", cfg, "--out", out, "--quiet")
    gsimg_train("train", cfg, "--out", tmp / "long-whole", "--quiet")
    assert_same_state(torch.load(tmp / "long-whole" / "checkpoint.pt", map_location="cpu", weights_only=False),
                      torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False))


def test_resume_refuses_another_configuration_or_other_pictures(setup):
    tmp, cfg, _ = setup
    out = tmp / "guard"
    gsimg_train("train", cfg, "--out", out, "--stop-after", 1, "--quiet")
    r = gsimg_train("train", cfg, "--out", out, "--set", "loss.mse_weight=5", check=False)
    assert r.returncode == 2
    assert "loss.mse_weight: 10.0 in the checkpoint, 5.0 now" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # where the data lives and how often to log are not what is trained
    gsimg_train("train", cfg, "--out", out, "--set", "run.log_every=2", "--stop-after", 1, "--quiet")
    other = tmp / "other-data"
    pictures(other, seed=1)
    r = gsimg_train("train", cfg, "--out", out, "--set", f'data.path="{other}"', check=False)
    assert r.returncode == 2 and "other pictures" in r.stderr
    # forced, it goes on with the new settings
    gsimg_train("train", cfg, "--out", out, "--set", "loss.mse_weight=5", "--force", "--stop-after", 1, "--quiet")
    ck = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["step"] == 3 and ck["config"]["loss"]["mse_weight"] == 5.0


@pytest.mark.parametrize("bad,message", [
    ('model = "upscale"\n[optim]\nlr = "fast"\n', "optim.lr: expected a number"),
    ('model = "compact"\n[loss]\nexact_gate = true\n', "unknown key `exact_gate`"),
    ('model = "other"\n', "`model` must be"),
    ('model = "compact"\n[[phase]]\nfrom_step = 0\n', "from_step"),
    ('model = "compact"\n[optim]\npatch = 100\n', "multiple of arch.cell"),
    ("model = \n", "tiny.toml"),
])
def test_bad_configuration_is_one_line(tmp_path, bad, message):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(bad)
    r = gsimg_train("train", cfg, "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_upscale_phases_and_init_from(setup):
    tmp, cfg, _ = setup
    up = tmp / "up.toml"
    up.write_text(UPSCALE.format(data=tmp / "data"))
    gsimg_train("train", up, "--out", tmp / "up", "--quiet")
    events = [json.loads(s) for s in (tmp / "up" / "log.jsonl").read_text().splitlines()]
    lrs = {e["step"]: e["lr"] for e in events if "lr" in e}
    # warm-up to 4e-4, then at step 2 fresh moments, re-warmed over 2 steps and annealed to zero at 5
    assert lrs[1] == pytest.approx(2e-4) and lrs[2] == pytest.approx(4e-4, rel=1e-3)
    assert lrs[3] < lrs[4] * 2 and lrs[5] < lrs[4]
    ck = torch.load(tmp / "up" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["complete"] and ck["step"] == 5
    # a new run may start from any checkpoint's EMA weights
    fine = tmp / "fine.toml"
    fine.write_text(UPSCALE.format(data=tmp / "data").replace('model = "upscale"',
                    f'model = "upscale"\ninit_from = "{tmp / "up" / "checkpoint.pt"}"'))
    gsimg_train("train", fine, "--out", tmp / "fine", "--stop-after", 1, "--quiet")
    # and a checkpoint of the other kind is refused
    wrong = tmp / "wrong.toml"
    wrong.write_text(cfg.read_text().replace('model = "compact"',
                     f'model = "compact"\ninit_from = "{tmp / "up" / "checkpoint.pt"}"'))
    r = gsimg_train("train", wrong, "--out", tmp / "wrong", check=False)
    assert r.returncode == 2 and "is a upscale model" in r.stderr


def test_committed_configurations_resolve():
    from gsimg_train import config as CFG

    root = Path(__file__).resolve().parents[1] / "configs"
    c = CFG.load(root / "compact.toml")
    assert c["optim"]["steps"] == 104710 and c["arch"]["per_cell"] == 24
    assert CFG.at_step(c, 92858)["loss"]["exact_gates"] is False
    assert CFG.at_step(c, 92859)["loss"]["exact_gates"] is True
    u = CFG.load(root / "upscale.toml")
    assert u["optim"]["steps"] == 25944
    assert CFG.lr_at(u, 25943) < 1e-9 < CFG.lr_at(u, 10800)
    # what the released checkpoints store agrees with the files
    for kind, conf in (("compact", c), ("upscale", u)):
        ck = torch.load(root.parents[1] / "ckpt" / f"{kind}.pt", map_location="cpu", weights_only=False)
        from gsimg_train import models as M

        assert M.config_dict(M.build(kind, ck["config"])) == M.config_dict(M.build(kind, conf["arch"]))
        assert ck["step"] == conf["optim"]["steps"]
        assert ck["base_lr"] == conf["optim"]["lr"] and ck["batch"] == conf["optim"]["batch"]
        assert ck["total_steps"] == conf["optim"]["schedule_steps"]
        for k, v in ck.get("loss_args", {}).items():
            if k in conf["loss"] and k != "exact_gates":
                want = [float(x) for x in v.split(",")] if k == "unroll_rates" else v
                assert conf["loss"][k] == want, k
        if kind == "compact":
            assert ck["loss_args"]["exact_gates"] == CFG.at_step(conf, ck["step"] - 1)["loss"]["exact_gates"]
            assert ck["mse_weight"] == conf["loss"]["mse_weight"]
