"""pytest set-up for models/train: Triton's CPU interpreter must be chosen before anything imports
Triton (gsrender does, through models.py), whichever test module pytest collects first."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
