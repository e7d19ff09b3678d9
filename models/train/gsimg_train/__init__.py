"""gsimg-train: training, export and evaluation of gsimg's encoder networks.

The command line is `gsimg-train` (or `python -m gsimg_train`); the guide is models/train/README.md.
"""

__version__ = "1.0.0"
