#!/usr/bin/env python
"""Train an Op-GAN blind audio restorer: `python train.py` (the embedded CPU-sized default),
`python train.py --preset paper`, `python train.py --data PATH`, `torchrun --nproc_per_node=N train.py`.

Thin on purpose: config -> data -> model -> fit all live in `opgan.config` and `opgan.trainer`.
"""
import sys

from opgan.trainer import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
