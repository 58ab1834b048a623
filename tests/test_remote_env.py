"""A target's env reaches every command run for it (sbatch, squeue, ...), not only job scripts."""
from types import SimpleNamespace

from pushbutton.execution.remote import shell_for


def test_target_env_reaches_commands():
    target = SimpleNamespace(name="t", host=None, env={"SLURM_CONF": "/x/slurm.conf", "N": 3})
    sh = shell_for(target)
    out = sh.run(["sh", "-c", 'printf "%s %s" "$SLURM_CONF" "$N"']).stdout
    assert out == "/x/slurm.conf 3"
    # a per-call env wins over the target's
    out = sh.run(["printenv", "N"], env={"N": "4"}).stdout.strip()
    assert out == "4"
