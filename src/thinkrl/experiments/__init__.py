"""Experiment drivers built on the training library: `thinkrl demo` (SFT → eval → RL → eval, per seed) and
`thinkrl ablate` (recipe grids × seeds). They load recipes, call `thinkrl.train` and `thinkrl.eval`, and write
reports; no training logic lives here."""
