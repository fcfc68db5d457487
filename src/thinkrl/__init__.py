"""thinkrl: RL for reasoning language models, served with a thinking budget.

Shape legend used in every docstring and reshape comment of the package:

    B  rows (sequences in a batch)      G  samples per prompt
    T  sequence length                  P  prompt length
    R  response length                  V  vocabulary size
    H  query heads                      K  key/value heads
    D  head dimension                   C  model (hidden) dimension
    N  total tokens of a packed batch   S  sequences in a packed batch
    L  layers
"""

__version__ = "0.1.0"
