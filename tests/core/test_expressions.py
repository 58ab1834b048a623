"""Expressions stay expressions: a --where is one SQL expression, `pb sql` is read-only on the
store, and analysis' success=/value= strings use the safe language of a space's where."""
import hashlib

import pytest

from pushbutton import Experiment, grid
from pushbutton.core.errors import PushbuttonError, SpecError

from .conftest import HERE, pb, write

SPEC = """
name = "sq"
function = "tasks:square"
[space]
grid = { x = [1, 2, 3] }
"""


def _state_hash(project):
    """What the state database holds (its bytes change whenever a reader checkpoints the WAL)."""
    import sqlite3
    con = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


def _store(root, other: bool):
    """A project whose store holds experiment sq (run by the CLI), and `other` too when asked;
    made once per module: the tests below only read it (and check that it stays as it was)."""
    import shutil
    for f in (HERE / "tasks").iterdir():
        if f.suffix == ".py":
            shutil.copy(f, root / f.name)
    write(root / "experiment.toml", SPEC)
    pb("run", "experiment.toml", cwd=root)
    if other:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)
            Experiment("other", function="tasks:square", space=grid(x=[1])).run()
    return root


@pytest.fixture(scope="module")
def _sq_store(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("sq"), other=False)


@pytest.fixture(scope="module")
def _sq_other_store(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("sq-other"), other=True)


@pytest.fixture
def sq_project(_sq_store, monkeypatch):
    monkeypatch.chdir(_sq_store)
    return _sq_store


@pytest.fixture
def sq_other_project(_sq_other_store, monkeypatch):
    monkeypatch.chdir(_sq_other_store)
    return _sq_other_store


@pytest.mark.parametrize("where", [
    "true; COPY (SELECT 42) TO '{out}'",
    "true) ; COPY (SELECT 42) TO '{out}'; SELECT (1",
    "true) UNION ALL SELECT * FROM read_csv('{secret}') --",
    "x IN (SELECT 1 FROM read_csv('{secret}'))",
])
def test_where_is_one_expression(sq_project, tmp_path, where):
    project = sq_project
    out = tmp_path / "x.csv"
    secret = write(project / "secret.csv", "a\n1\n")
    text = where.format(out=out, secret=secret)
    r = pb("results", "--format", "csv", "--where", text, check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "--where" in r.stderr and r.stdout == ""
    assert not out.exists()
    with pytest.raises(PushbuttonError):
        Experiment("sq", function="tasks:square", space=grid(x=[1, 2, 3])).results(where=text)
    assert not out.exists()
    # an ordinary condition still works, strings with ';' and ')' included
    r = pb("results", "--format", "csv", "--where", "x > 1 AND 'a;)' <> pb_status")
    assert len(r.stdout.splitlines()) == 3


@pytest.mark.parametrize("query, words", [
    ("COPY (SELECT 42) TO '{out}'", "COPY"),
    ("COPY results TO '{res}/injected.parquet'", "COPY"),
    ("ATTACH '{state}' AS s", "ATTACH"),
    ("ATTACH '{state}' AS s (TYPE sqlite)", "ATTACH"),
    ("INSTALL sqlite", "refused"),
    ("LOAD sqlite", "refused"),
    ("SET enable_external_access = true", "SET"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("SELECT 1; COPY (SELECT 42) TO '{out}'", "one query"),
    ("SELECT * FROM read_csv('{secret}')", "reads only"),
    ("SELECT * FROM read_parquet('{other}/*.parquet')", "reads only"),
])
def test_sql_is_read_only(sq_other_project, tmp_path, query, words):
    project = sq_other_project
    before = _state_hash(project)
    res = project / ".pushbutton" / "results" / "sq"
    n_parts = len(list(res.iterdir()))
    out = tmp_path / "x.csv"
    q = query.format(out=out, res=res, state=project / ".pushbutton" / "state.sqlite",
                     secret=write(project / "secret.csv", "a\n1\n"),
                     other=project / ".pushbutton" / "results" / "other")
    r = pb("sql", q, "-e", "sq", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert words in r.stderr, r.stderr
    assert not out.exists() and len(list(res.iterdir())) == n_parts
    assert _state_hash(project) == before
    # reading still works, the tables' own files included
    r = pb("sql", "SELECT count(*) AS n FROM results", "-e", "sq", "--format", "csv")
    assert r.stdout.splitlines() == ["n", "3"]


def test_analysis_expressions_are_sandboxed(project):
    exp = Experiment("sq", function="tasks:square", space=grid(x=[1, 2, 3, 4]))
    exp.run()
    pwned = project / "pwned"
    for bad in (f"__import__('os').system('touch {pwned}')",
                "y.__class__.__name__ == 'int'",
                "[c for c in ().__class__.__base__.__subclasses__()]"):
        with pytest.raises(SpecError) as e:
            exp.success_rate(success=bad)
        assert e.value.key == "success" and "allowed" in str(e.value), str(e.value)
        with pytest.raises(SpecError):
            exp.plot("heatmap", x="x", y="y", value=bad)
    assert not pwned.exists()
    with pytest.raises(SpecError) as e:
        exp.success_rate(success="z < 3")
    assert "unknown column 'z'" in str(e.value)
    # what the language allows works as before: comparisons, and/or, arithmetic, calls
    sr = exp.success_rate(success="y > 1 and abs(y - 10) < 8")
    assert sr["pb_rate"].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert exp.boundary(x="x", y="y", rate="y >= 9")["pb_n_crossings"].tolist() == [0, 0, 0, 0]
