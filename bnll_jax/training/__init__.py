"""Training: config, sharded step, checkpoints, metrics and the loop."""
