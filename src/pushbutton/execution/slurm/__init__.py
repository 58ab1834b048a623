"""SLURM: the backend, submission and sync of fire-and-forget runs."""
