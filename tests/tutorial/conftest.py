"""The tutorial's SLURM part uses the suite's test cluster and sshd, as tests/slurm does (its
fixtures: skip without them, fail under CI=true)."""
from slurm.conftest import slurm, ssh_host  # noqa: F401  (fixtures, re-exported)
