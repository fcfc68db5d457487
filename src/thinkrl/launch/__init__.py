"""Launchers: where the parts of a run are placed. Today: Ray (``pip install thinkrl[ray]``).

`ray_placement` puts rollout workers and data-parallel trainer ranks as Ray actors on separate placement groups
(resource groups), possibly on several nodes; `ray_loop` drives an RL run over them with the same rollout, actor and
update code as the single-process loop (`thinkrl.train.rl_loop`). Ray is imported only when a Ray run starts, so
the rest of thinkrl never needs it. Imports train, rollout, engine, model, tokenizer, tasks, rl, eval.
"""
