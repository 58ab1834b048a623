"""execution/factory.backend_for: the one place a backend is made from `--on`."""
import os

from pushbutton import Experiment, grid
from pushbutton.execution.factory import backend_for
from pushbutton.harvest.ingest import RunPolicy


def _policy(project, **kw):
    exp = Experiment("fac", function="tasks:square", space=grid(x=[1, 2]), project=project,
                     **kw)
    return exp, RunPolicy.of(exp)


def test_a_named_local_target_honours_its_workers_and_the_tasks_cpus(project):
    (project / "pushbutton-targets.toml").write_text(
        '[targets.box]\nscheduler = "local"\nworkers = 3\n')
    exp, policy = _policy(project, cpus=2)
    be = backend_for("box", exp.create_store(), resources=policy)
    assert (be.n, be.threads) == (3, 2)  # the target's pool; BLAS threads per task = cpus
    be.close()
    # -j wins over the target
    be = backend_for("box", exp.create_store(), workers=5, resources=policy)
    assert (be.n, be.threads) == (5, 2)
    be.close()


def test_a_named_local_target_without_workers_fits_the_cpus(project):
    (project / "pushbutton-targets.toml").write_text('[targets.box]\nscheduler = "local"\n')
    exp, policy = _policy(project, cpus=2, workers=None)
    be = backend_for("box", exp.create_store(), resources=policy)
    assert be.n == max(1, (os.cpu_count() or 1) // 2) and be.threads == 2
    be.close()


def test_the_spec_workers_apply_on_local(project):
    exp, policy = _policy(project, workers=2)
    be = backend_for("local", exp.create_store(), resources=policy)
    assert be.n == 2 and be.threads == 1 and not be.fire_and_forget
    be.close()


def test_slurm_options_go_to_the_constructor(project):
    exp, policy = _policy(project, gpus=1)
    be = backend_for("local-slurm", exp.create_store(), sbatch="--comment=x", resources=policy)
    assert be.fire_and_forget and be.sbatch == ["--comment=x"] and be.gpus == 1
    assert be.cache_path and be.cache_path.endswith("limits-local-slurm.json")
    be.close()
