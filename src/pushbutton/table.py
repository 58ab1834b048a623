"""One results table per experiment, and SQL over it (DuckDB).

`results()` joins the task states kept in SQLite with the Parquet rows of finished tasks; `sql()`
exposes the views `results` (newest row per task), `tasks` and `series` to DuckDB."""
from __future__ import annotations

import json
import re

from . import results as R
from .errors import PushbuttonError

TAIL = ["status", "error_kind", "error", "attempts", "duration_s", "host", "run_id",
        "finished_at"]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def results(store, eid: int, name: str, where: str | None = None, all_tasks: bool = True,
            limit: int | None = None):
    """One row per task of the current space, in space order. The join runs in DuckDB: task
    states come from SQLite (three columns for every task; the rest only for tasks not done),
    parameters and metrics of done tasks from the Parquet rows."""
    import duckdb
    import pandas as pd
    import pyarrow as pa
    folder = store.dir / "results" / name
    db = store.db
    ids, idxs, states = [], [], []
    for tid, idx, st in db.execute("SELECT id, idx, state FROM tasks WHERE exp=? AND idx IS NOT "
                                   "NULL", (eid,)):
        ids.append(tid)
        idxs.append(idx)
        states.append(st)
    t = pa.table({"task_id": pa.array(ids, pa.string()), "idx": pa.array(idxs, pa.int64()),
                  "status": pa.array(states, pa.string())})
    rows = db.execute("SELECT id, attempts, error_kind, error, t0, t1, host, run, params FROM tasks "
                      "WHERE exp=? AND idx IS NOT NULL AND state != 'done'", (eid,)).fetchall()
    recs = []
    for tid, att, ek, err, t0, t1, host, run, params in rows:
        d = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
             for k, v in json.loads(params).items()}
        d.update({"task_id": tid, "_attempts": att, "_error_kind": ek, "_error": err,
                  "_duration": (t1 - t0) if (t0 and t1) else None, "_host": host,
                  "_run": run, "_t1": t1})
        recs.append(d)
    nd = pd.DataFrame.from_records(recs) if recs else pd.DataFrame(
        {"task_id": pd.Series([], dtype=object)})
    for c in ("_attempts", "_error_kind", "_error", "_duration", "_host", "_run", "_t1"):
        if c not in nd.columns:
            nd[c] = pd.Series([None] * len(nd), dtype=object)
    meta = R.columns_meta(folder)
    latest = R.latest_sql(folder)
    con = duckdb.connect()
    con.register("t", t)
    con.register("nd", nd)
    nd_params = [c for c in nd.columns if c != "task_id" and not c.startswith("_")]
    params = list(meta["params"]) + [c for c in nd_params if c not in meta["params"]]
    metrics = [c for c in meta["metrics"] if c not in params]
    if latest:
        con.execute(f"CREATE VIEW r AS {latest}")
    else:
        con.execute("CREATE VIEW r AS SELECT NULL::VARCHAR AS task_id, NULL::BIGINT AS attempts, "
                    "NULL::DOUBLE AS duration_s, NULL::VARCHAR AS host, NULL::BIGINT AS run_id, "
                    "NULL::DOUBLE AS finished_at WHERE false")

    def param(c, cast=False):
        a = f"r.{_q(c)}" if c in meta["params"] else None
        b = f"nd.{_q(c)}" if c in nd_params else None
        if cast:
            a, b = (f"CAST({x} AS VARCHAR)" if x else None for x in (a, b))
        return f"COALESCE({a}, {b})" if a and b else (a or b)

    def query(cast):
        cols = ["t.task_id"] + [f"{param(c, cast)} AS {_q(c)}" for c in params]
        cols += [f"CASE WHEN t.status = 'done' THEN r.{_q(c)} END AS {_q(c)}" for c in metrics]
        cols += ["t.status", "nd._error_kind AS error_kind", "nd._error AS error",
                 "COALESCE(r.attempts, nd._attempts) AS attempts",
                 "COALESCE(r.duration_s, nd._duration) AS duration_s",
                 "COALESCE(r.host, nd._host) AS host", "COALESCE(r.run_id, nd._run) AS run_id",
                 "COALESCE(r.finished_at, nd._t1) AS finished_at"]
        q = (f"SELECT {', '.join(cols)} FROM t LEFT JOIN r ON r.task_id = t.task_id "
             f"LEFT JOIN nd ON nd.task_id = t.task_id")
        if not all_tasks:
            q += " WHERE t.status = 'done'"
        return (f"SELECT * FROM ({q} ORDER BY t.idx)" + (f" WHERE {where}" if where else "")
                + (f" LIMIT {int(limit)}" if limit else ""))
    try:
        try:
            df = con.execute(query(False)).df()
        except duckdb.Error:  # a parameter typed differently in results and pending tasks
            df = con.execute(query(True)).df()
    except duckdb.Error as e:
        if not where:
            raise
        raise PushbuttonError(f"--where {where!r}: {str(e).splitlines()[0]}; columns are: "
                              f"task_id, {', '.join(params + metrics)}, {', '.join(TAIL)}") \
            from None
    for c in params:
        if df[c].dtype == object:
            df[c] = _infer(df[c])
    df.attrs["params"] = params
    df.attrs["metrics"] = metrics
    return df


def _infer(col):
    import pandas as pd
    try:
        return pd.to_numeric(col)
    except (ValueError, TypeError):
        return col.infer_objects()


def series(store, eid: int, name: str):
    import duckdb
    import pandas as pd
    files = R.parts(store.dir / "series" / name)
    if not files:
        return pd.DataFrame(columns=["task_id", "step", "time"])
    lst = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    s = duckdb.connect().execute(f"SELECT * FROM read_parquet([{lst}], union_by_name=true) "
                                 "ORDER BY task_id, step, time").df()
    params = _params_frame(store, eid)
    return s.merge(params, on="task_id", how="left")


def _params_frame(store, eid):
    import pandas as pd
    rows = store.db.execute("SELECT id, params FROM tasks WHERE exp=?", (eid,)).fetchall()
    recs = []
    for tid, p in rows:
        d = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
             for k, v in json.loads(p).items()}
        d["task_id"] = tid
        recs.append(d)
    return pd.DataFrame.from_records(recs)


def connect(store, experiment: str | None = None, query: str = ""):
    """A DuckDB connection with views results / tasks / series for one experiment."""
    import duckdb
    exps = store.experiments()
    if not exps:
        raise PushbuttonError("no experiments in this project yet; run one with `pb run`")
    names = [e["name"] for e in exps]
    if experiment is None:
        experiment = names[-1]
    if experiment not in names:
        raise PushbuttonError(f"no experiment '{experiment}'; known: {', '.join(names)}")
    eid = next(e["id"] for e in exps if e["name"] == experiment)
    con = duckdb.connect()
    sql = R.latest_sql(store.dir / "results" / experiment)
    con.execute(f"CREATE VIEW results AS {sql}" if sql else
                "CREATE VIEW results AS SELECT NULL::VARCHAR AS task_id WHERE false")
    files = R.parts(store.dir / "series" / experiment)
    if files:
        lst = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(f"CREATE VIEW series AS SELECT * FROM read_parquet([{lst}], "
                    "union_by_name=true)")
    if re.search(r"\btasks\b", query or "", re.I):  # loaded only when asked for
        import pandas as pd
        cur = store.db.execute("SELECT id AS task_id, idx, state, attempts, error_kind, error, "
                               "t0, t1, host, run, params FROM tasks WHERE exp=?", (eid,))
        tdf = pd.DataFrame.from_records(cur.fetchall(), columns=[
            "task_id", "idx", "state", "attempts", "error_kind", "error", "t0", "t1", "host",
            "run_id", "params"])
        con.register("tasks", tdf)
    return con


def sql(store, query: str, experiment: str | None = None):
    import duckdb
    con = connect(store, experiment, query)
    try:
        return con.execute(query).df()
    except duckdb.Error as e:
        raise PushbuttonError(f"SQL error: {str(e).splitlines()[0]}\n  tables: results, tasks, "
                              "series; e.g. SELECT n, avg(error) FROM results GROUP BY n") from None
