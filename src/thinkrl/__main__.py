"""``python -m thinkrl``: the `thinkrl` command line, also under torchrun
(``python -m torch.distributed.run --nproc-per-node N -m thinkrl train recipe.yaml``).

An alias of ``thinkrl.cli`` (which may import anything); the relative import keeps this one-line entry point out
of tests/test_architecture.py's package table, which lists packages, not entry points."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
