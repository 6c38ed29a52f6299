"""Ground floor: the machinery every training loop shares, with no model code.

  checkpoint   the one run-state store (`RunStore`): atomic checkpoints, metrics rows, RNG states, run identity
  checks       checks of the trainers' arguments (counts, prompts, rewards), each error naming the parameter
  threads      the notebook's thread budget under `python -m rlxf.run --jobs N`
  batching     length-bucketed training batches for Trainers
  distributed  data parallelism for rlxf's PPO on plain torch.distributed
  tracking     the one `report_to` setting and `MetricsLog`
  memory       peak memory of a function in a fresh process, and of a phase inside one
"""
