"""End to end: a small real experiment (with failures and per-step series) -> `exp.report()` and
`pb report`; the report reflects the store (counts, runs, spec, figures)."""
from __future__ import annotations

import textwrap

import pytest

TASK = textwrap.dedent('''
    import math, random
    import pushbutton

    def recover(delta, rho, rep, seed=None):
        if rho > 0.9 and rep == 0:
            raise ValueError("diverged <script>window.__pwned=1</script>")
        r = random.Random(seed)
        for step in range(3):
            pushbutton.log(step=step, loss=1.0 / (step + 1 + delta))
        p = 1 / (1 + math.exp(-(rho - (0.2 + 0.5 * delta)) / 0.05))
        return {"success": r.random() < p, "err": r.random()}
''')

SPEC = textwrap.dedent('''
    name = "phase"
    description = "Where does recovery <fail>?"
    function = "task:recover"
    [space]
    reps = 2
    [space.grid]
    delta = [0.2, 0.8]
    rho = [0.0, 0.5, 1.0]
    [run]
    workers = 2
    [units]
    delta = "n/N"
    [[figures]]
    kind = "heatmap"
    x = "delta"
    y = "rho"
    value = "success"
    boundary = 0.5
    [[figures]]
    kind = "learning_curves"
    metric = "loss"
    hue = "delta"
''')


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    import os

    import pushbutton as pb
    root = tmp_path_factory.mktemp("proj")
    (root / "task.py").write_text(TASK)
    (root / "experiment.toml").write_text(SPEC)
    old = os.getcwd()
    os.chdir(root)
    try:
        exp = pb.load(root / "experiment.toml", project=root)
        exp.run(message="first <b>run</b>", yes=True)
        yield root, exp
    finally:
        os.chdir(old)


def test_exp_report(project):
    root, exp = project
    path = exp.report()
    assert path == root / ".pushbutton" / "reports" / "phase" / "report.html"
    assert not (root / "reports").exists()  # nothing new among the project's files
    html = path.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2
    assert "Where does recovery &lt;fail&gt;?" in html and "first &lt;b&gt;run&lt;/b&gt;" in html
    assert "diverged &lt;script&gt;" in html and "<script>window" not in html
    assert 'name = &#34;phase&#34;' in html  # the spec file, verbatim and escaped
    assert "partial-banner" not in html and "done 10" in html and "failed 2" in html
    assert "grid(delta" in html  # the space as the experiment describes it
    assert (root / ".pushbutton" / "reports" / "phase" / "figures" / "01-heatmap-success.svg").exists()


def test_cli_report(project, tmp_path):
    import os

    from click.testing import CliRunner

    from pushbutton.cli.report import COMMANDS
    root, _ = project
    old = os.getcwd()
    os.chdir(root)
    try:
        res = CliRunner().invoke(COMMANDS[0], ["phase", "--out", str(tmp_path / "r")])
    finally:
        os.chdir(old)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.html").exists() and "report:" in res.output


def test_report_of_an_experiment_not_run_yet(project):
    import pushbutton as pb
    root, _ = project
    spec = root / "later.toml"
    spec.write_text(SPEC.replace('name = "phase"', 'name = "later"'))
    exp = pb.load(spec, project=root)
    exp.register(yes=True)  # tasks exist, none has run
    html = exp.report(root / "later-report").read_text(encoding="utf-8")
    assert "partial-banner" in html and "0 of 12 tasks finished" in html
    assert 'id="no-results"' in html and html.count('src="data:image/png;base64,') == 2
