"""The Arrow fast path of ingest works on a bundle's tasks as arrays (harvest/taskindex.py): no
Python work per task, and the same answers as the line-by-line path when chunks are unusual
(ends out of order, repeated, of tasks the bundle lacks, failed)."""
import cProfile
import json
import pstats
import time

from pushbutton import Experiment, grid
from pushbutton.execution.driver import Driver
from pushbutton.harvest import arrow as ingest_arrow


class _Backend:
    """Takes bundles and runs nothing: the test writes the outcome lines itself."""
    name = "local"

    def submit(self, refs):
        return [r.id for r in refs]

    def capacity(self):
        return None


def _bundle(name, n):
    """A registered experiment of n tasks and one bundle of all of them, handed out."""
    exp = Experiment(name, function="tasks:square", space=grid(x=range(n)))
    exp.register(yes=True)
    store = exp.store
    eid = store.experiment(name)
    with store.tx():
        store.db.execute("INSERT INTO runs(exp, started, status) VALUES (?,?,?)",
                         (eid, time.time(), "running"))
    run = store.db.execute("SELECT max(id) FROM runs").fetchone()[0]
    drv = Driver(store, exp, eid, _Backend(), run)
    assert drv._make_bundle(n) == n
    (b,) = drv.active.values()
    return exp, drv.ingestor, b


def _lines(b, order=None, fail=(), extra=()):
    """Outcome lines as worker.py writes them: a start and an end line per task."""
    ids = list(b.tasks)
    out = []
    for k in (range(len(ids)) if order is None else order):
        tid = ids[k]
        x = json.loads(b.tasks[tid][2])["x"]
        t = 1.7e9 + k
        out.append('{"id":"%s","ev":"start","t":%r,"log":[0,0]}' % (tid, t))
        if k in fail:
            out.append('{"id": "%s", "ev": "end", "t0": %r, "t1": %r, "host": "h", "node": "h", '
                       '"log": [0, 0, 0, 0], "ok": false, "kind": "exception", "error": "no"}'
                       % (tid, t, t + 0.5))
        else:
            out.append('{"id": "%s", "ev": "end", "t0": %r, "t1": %r, "host": "h", "node": "h", '
                       '"log": [0, 0, 0, 0], "ok": true,"metrics":{"y":%d}}'
                       % (tid, t, t + 0.5, x * x))
    return out + list(extra)


def _append(b, lines):
    with open(b.dir / "outcomes.jsonl", "a") as f:
        f.write("".join(line + "\n" for line in lines))


def _python_calls(ing, b) -> int:
    prof = cProfile.Profile()
    prof.enable()
    ing.ingest([b])
    ing.finalize(b, False)
    prof.disable()
    return sum(s[1] for s in pstats.Stats(prof).stats.values())  # every call, C ones too


def test_fast_ingest_does_no_python_work_per_task(project, monkeypatch):
    taken = []
    real = ingest_arrow.parse
    monkeypatch.setattr(ingest_arrow, "parse", lambda *a: (lambda r: taken.append(
        r is not None) or r)(real(*a)))
    calls = {}
    for n in (600, 2_000, 20_000):  # the first one imports what ingest needs
        exp, ing, b = _bundle(f"p{n}", n)
        _append(b, _lines(b))
        calls[n] = _python_calls(ing, b)
        assert exp.store.counts(ing.exp_id)["done"] == n
        assert len(exp.results()) == n
    assert all(taken) and len(taken) == 3  # the Arrow path, every time
    # ten times the tasks, about the same Python calls (the line-by-line work was ~10 per task)
    assert calls[20_000] < 1.3 * calls[2_000] + 500, calls


def _table(exp):
    df = exp.results()
    return df[["x", "y", "pb_status", "pb_attempts"]].sort_values("x").reset_index(drop=True)


def test_unusual_chunks_agree_with_the_line_by_line_path(project, monkeypatch):
    n = 1200
    results, fast_calls = {}, []
    real = ingest_arrow.parse
    for path in ("fast", "slow"):
        if path == "fast":
            monkeypatch.setattr(ingest_arrow, "parse",
                                lambda *a: (lambda r: fast_calls.append(r is not None) or r)(
                                    real(*a)))
        else:
            monkeypatch.setattr(ingest_arrow, "parse", lambda *a: None)
        exp, ing, b = _bundle(path, n)
        ids = list(b.tasks)
        # chunk 1: ends out of the bundle's order (the hash lookup), one failed task
        first = list(range(600))
        first[10], first[500] = first[500], first[10]
        _append(b, _lines(b, order=first, fail={7}))
        ing.ingest([b])
        assert 500 in [ids.index(t) for t in b.ended] and ids[7] in b.ended
        assert len(b.ended) == 600 and bool(b.ended)
        # chunk 2: the rest, with tasks 3 and 700 ending again and an end of a task the
        # bundle lacks: one end per task and bundle, whatever a worker repeated
        again = _lines(b, order=[3, 700])
        stranger = again[-1].replace(ids[700], "f" * 20)
        _append(b, _lines(b, order=range(600, n)) + again + [stranger])
        ing.ingest([b])
        assert ing.finalize(b, False) == 0
        assert b.ended.missing(b.tasks) == [] and "f" * 20 not in b.ended
        counts = exp.store.counts(ing.exp_id)
        assert counts["done"] == n - 1 and counts["failed"] == 1, counts
        assert exp.store.kept_counts(ing.exp_id) == counts
        results[path] = _table(exp)
    assert fast_calls and all(fast_calls), fast_calls  # the Arrow path took these chunks
    fast, slow = results["fast"], results["slow"]
    assert fast.equals(slow)
    done = fast[fast["pb_status"] == "done"]
    assert len(done) == n - 1 and (done["y"] == done["x"] ** 2).all()
    assert (fast["pb_attempts"] == 1).all()


def test_start_lines_are_cut_out_by_layout_and_every_start_is_kept():
    """Start lines in worker.py's layout are cut from the chunk before Arrow reads it; a start
    line laid out otherwise is still read by Arrow, and each start reaches the started set."""
    a, b, c = "a" * 20, "b" * 20, "c" * 20
    lines = ['{"id":"%s","ev":"start","t":1.0,"log":[0,0]}' % a,
             '{"id": "%s", "ev": "end", "t0": 1.0, "t1": 2.0, "ok": true}' % a,
             '{"id": "%s", "ev": "start", "t": 2.0}' % b,  # another writer's spacing
             '{"id":"%s","ev":"start","t":3.0,"log":[0,0]}' % c]
    ends, starts = ingest_arrow._read_lines(("\n".join(lines) + "\n").encode())
    assert ends["id"].to_pylist() == [a] and sorted(starts.to_pylist()) == [a, b, c]
    ends, starts = ingest_arrow._read_lines((lines[3] + "\n" + lines[0] + "\n").encode())
    assert len(ends) == 0 and sorted(starts.to_pylist()) == [a, c]


def test_marks_answer_as_the_set_of_ended_tasks():
    """What the SLURM harvest, finalize and the line-by-line path ask of `ended`."""
    import numpy as np
    from pushbutton.harvest.taskindex import Marks, TaskIndex
    tasks = {t: (i + 1, 1, '{"x":%d}' % i) for i, t in enumerate(["t0", "t1", "t2", "t3"])}
    m = Marks(["t3", "elsewhere"])
    assert "t3" in m and not bool(Marks())
    m.bind(TaskIndex(tasks))
    assert m.any_at(np.array([3])) and not m.any_at(np.array([0, 1]))
    m.mark(np.array([0, 1]))
    assert "t1" in m and "t2" not in m and len(m) == 4 and bool(m)
    assert sorted(m) == ["elsewhere", "t0", "t1", "t3"] and m.missing(tasks) == ["t2"]
    m.discard("t1")
    m.add("t2")
    assert m.missing(tasks) == ["t1"] and not m.any_at(np.array([1]))
    m.bind(TaskIndex(dict(tasks)))  # the task dict replaced (pb repair): nothing is lost
    assert m.missing(tasks) == ["t1"] and "t0" in m


def test_a_chunk_is_read_in_blocks_and_a_line_longer_than_a_block_still_reads(monkeypatch):
    """Arrow reads a chunk in blocks its threads share (arrow.BLOCK). Types inferred per block
    come out as one read of the whole chunk gives them (an int metric that turns float later
    is float throughout, a key first seen late is a column), and a line longer than a block
    (a task's big metric), which Arrow refuses to split, is read by one read of the whole
    chunk instead of sending the chunk down the line-by-line path."""
    import pyarrow as pa
    monkeypatch.setattr(ingest_arrow, "BLOCK", 1 << 16)
    ends = ['{"id": "%020x", "ev": "end", "t0": 1.0, "t1": 2.0, "ok": true, '
            '"metrics": {"y": %d}}' % (k, k) for k in range(3000)]
    ends[2500] = ends[2500].replace('"y": 2500}', '"y": 2500.5, "late": "s"}')
    body = ("\n".join(ends) + "\n").encode()
    assert len(body) > 4 * ingest_arrow.BLOCK
    got, _ = ingest_arrow._read_lines(body)
    m = got["metrics"].combine_chunks()
    assert m.type.field("y").type == pa.float64() and m.type.field("late").type == pa.string()
    assert m.field("y").to_pylist()[2499:2501] == [2499.0, 2500.5]
    assert got["id"].to_pylist() == ["%020x" % k for k in range(3000)]
    big = "v" * (3 * ingest_arrow.BLOCK)
    ends[10] = ends[10].replace('"y": 10}', '"y": 10, "blob": "%s"}' % big)
    got, _ = ingest_arrow._read_lines(("\n".join(ends) + "\n").encode())
    assert len(got) == 3000
    assert got["metrics"].combine_chunks().field("blob").to_pylist()[10] == big


def test_a_chunk_of_many_blocks_is_ingested_on_the_fast_path(project, monkeypatch):
    """The whole fast path (matching, columns, the Parquet part) over the chunked columns that
    a read of many blocks gives: every task done once, its metric right."""
    monkeypatch.setattr(ingest_arrow, "BLOCK", 1 << 16)
    taken = []
    real = ingest_arrow.parse
    monkeypatch.setattr(ingest_arrow, "parse", lambda *a: (lambda r: taken.append(
        r is not None) or r)(real(*a)))
    exp, ing, b = _bundle("blocks", 3000)
    order = list(range(3000))
    order[5], order[2900] = order[2900], order[5]  # out of order: the hash lookup too
    _append(b, _lines(b, order=order, fail={11}))
    ing.ingest([b])
    assert taken == [True]
    assert ing.finalize(b, False) == 0
    counts = exp.store.counts(ing.exp_id)
    assert counts["done"] == 2999 and counts["failed"] == 1, counts
    assert exp.store.kept_counts(ing.exp_id) == counts
    df = _table(exp)
    done = df[df["pb_status"] == "done"]
    assert len(done) == 2999 and (done["y"] == done["x"] ** 2).all()


def test_counts_stay_exact_when_some_ended_tasks_were_no_longer_running(project, monkeypatch):
    """The ingest of successes moves the kept counts by the rows its UPDATE changed from running
    (store/counts.moved, no scan); a task that another writer had taken out of running
    meanwhile (requeued, failed, cancelled, already done) sends it down the counted
    path, and the counts still equal the table's on both ingest paths."""
    real = ingest_arrow.parse
    for path in ("fast", "slow"):
        monkeypatch.setattr(ingest_arrow, "parse", real if path == "fast" else lambda *a: None)
        for odd in (False, True):
            name = f"{path}{int(odd)}"
            exp, ing, b = _bundle(name, 1200)
            store, eid = exp.store, ing.exp_id
            rowids = [b.tasks[t][0] for t in b.tasks]
            if odd:
                with store.tx(), store.counted(eid, rowids=rowids[:4]):
                    for r, sql in zip(rowids, ("state='pending'", "state='failed'",
                                               "state='cancelled'", "state='done'")):
                        store.db.execute(f"UPDATE tasks SET {sql} WHERE rowid=?", (r,))
            assert store.kept_counts(eid) == store.counts(eid)
            _append(b, _lines(b))
            ing.ingest([b])
            counts = store.counts(eid)
            assert store.kept_counts(eid) == counts, (name, counts)
            assert {s: k for s, k in counts.items() if k} == {"done": 1200}
            states = store.db.execute("SELECT count(*) FROM tasks WHERE exp=? AND "
                                      "state='done' AND bundle=?", (eid, b.id)).fetchone()[0]
            assert states == 1200  # every ended task is done, in this bundle


def test_the_ingest_update_walks_the_rowid_range(project):
    """The ingest's UPDATE of successes, narrowed to running rows, stays on the rowid range
    (with a plain `exp=?` SQLite chose the (exp, id) index: every row of the experiment was
    read for each range, the ingest of 10^6 results took twice as long)."""
    from pushbutton.harvest.ingest import _DONE
    from pushbutton.store.counts import only_in
    exp, ing, b = _bundle("plan", 50)
    sql = only_in(_DONE)
    plan = exp.store.db.execute("EXPLAIN QUERY PLAN " + sql, (1, b.id, 1, 1, 50, "running",
                                                               ing.exp_id)).fetchall()
    assert "INTEGER PRIMARY KEY" in " ".join(str(r[-1]) for r in plan), plan


def test_a_stopped_bundles_mid_run_task_is_found_in_either_layout(project):
    """A bundle that stops with tasks not ended: the one with a start line was mid-run and is
    charged (its log from its start offsets), the others go back to pending. The start lines
    are in starts.jsonl (worker.py now) or, in a bundle an earlier worker wrote, between the
    end lines of outcomes.jsonl; `pb status` tells a running task from the same files."""
    from pushbutton.harvest.outcomes import runs_a_task
    for layout in ("starts.jsonl", "outcomes.jsonl"):
        exp, ing, b = _bundle(f"stop{layout[0]}", 8)
        lines = _lines(b, order=range(4))
        tid = list(b.tasks)[4]
        start = '{"id":"%s","ev":"start","t":%r,"log":[0,0]}' % (tid, 1.7e9 + 4)
        assert not runs_a_task(b.dir)
        if layout == "starts.jsonl":
            _append(b, [ln for ln in lines if '"end"' in ln])
            assert not runs_a_task(b.dir)  # (no start line yet: not started)
            with open(b.dir / "starts.jsonl", "a") as f:
                f.write("".join(ln + "\n" for ln in lines if '"start"' in ln))
            assert not runs_a_task(b.dir)  # task 3 ended last
            with open(b.dir / "starts.jsonl", "a") as f:
                f.write(start + "\n")
        else:
            _append(b, lines + [start])
        assert runs_a_task(b.dir)
        (b.dir / "stdout.log").write_text("last words\n")
        ing.ingest([b])
        assert ing.finalize(b, True, cause="its worker died", kind="lost") == 3
        rows = dict(exp.store.db.execute(
            "SELECT id, state || ' ' || coalesce(error_kind, '') || ' ' || coalesce(log, '') "
            "FROM tasks WHERE exp=?", (ing.exp_id,)).fetchall())
        # charged an attempt ('lost' is retried by default: pending again, its log kept)
        assert rows[tid] == "pending lost [0,11,0,0]", (layout, rows[tid])
        assert exp.store.db.execute("SELECT t.id, a.kind FROM attempts a JOIN tasks t ON "
                                    "t.rowid = a.task WHERE t.exp=?",
                                    (ing.exp_id,)).fetchall() == [(tid, "lost")]
        assert list(rows.values()).count("done  ") == 4
        assert list(rows.values()).count("pending  ") == 3  # never started: not charged
        assert exp.store.kept_counts(ing.exp_id) == exp.store.counts(ing.exp_id)
