"""Floor 4: running bundles: the driver, the worker, backends, targets, SLURM."""
