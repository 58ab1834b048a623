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


def _tasks_frame(store, eid, with_params_for=None):
    import pandas as pd
    cur = store.db.execute("SELECT id, idx, state, attempts, error_kind, error, t0, t1, host, run, "
                           "params FROM tasks WHERE exp=? AND idx IS NOT NULL ORDER BY idx", (eid,))
    cols = ["task_id", "idx", "status", "attempts", "error_kind", "error", "t0", "t1", "host",
            "run_id", "params"]
    return pd.DataFrame.from_records(cur.fetchall(), columns=cols)


def results(store, eid: int, name: str, where: str | None = None, all_tasks: bool = True):
    import duckdb
    import pandas as pd
    folder = store.dir / "results" / name
    tasks = _tasks_frame(store, eid)
    meta = R.columns_meta(folder)
    sql = R.latest_sql(folder)
    if sql:
        done = duckdb.connect().execute(sql).df()
    else:
        done = pd.DataFrame(columns=["task_id"])
    done = done.drop(columns=[c for c in ("attempts", "run_id") if c in done.columns])
    df = tasks.merge(done, on="task_id", how="left", suffixes=("_task", ""))
    if "host_task" in df.columns:  # done tasks: host from the result row; others from SQLite
        df["host"] = df["host"].fillna(df["host_task"]) if "host" in df.columns else df["host_task"]
        df = df.drop(columns=["host_task"])
    is_done = df["status"] == "done"
    # metrics of a task that is no longer done (e.g. --rerun under way) are not current
    if (~is_done).any():
        for c in meta["metrics"]:
            if c in df.columns:
                if df[c].dtype == bool or str(df[c].dtype) == "boolean":
                    df[c] = df[c].astype(object)  # a bool column cannot hold "no value"
                df.loc[~is_done, c] = None
    # parameters of tasks without a result row come from the task table
    need = ~df["task_id"].isin(done["task_id"])
    if need.any():
        extra = pd.DataFrame.from_records([json.loads(p) for p in df.loc[need, "params"]],
                                          index=df.index[need])
        for c in extra.columns:
            if c not in df.columns:
                df[c] = None
            col = extra[c].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
            df[c] = df[c].astype(object)
            df.loc[need, c] = col
    params = [c for c in meta["params"]]
    for c in df.columns:  # parameters of not-yet-run tasks
        if c not in params and c not in tasks.columns and c not in meta["metrics"] \
                and c not in R.META:
            params.append(c)
    df["duration_s"] = df["t1"] - df["t0"] if "duration_s" not in df.columns else \
        df["duration_s"].fillna(df["t1"] - df["t0"])
    df["finished_at"] = df["finished_at"].fillna(df["t1"]) if "finished_at" in df.columns \
        else df["t1"]
    order = ["task_id"] + params + [c for c in meta["metrics"] if c in df.columns] + TAIL
    df = df[[c for c in order if c in df.columns]]
    for c in params:
        df[c] = _infer(df[c])
    if not all_tasks:
        df = df[df["status"] == "done"]
    metrics = [c for c in meta["metrics"] if c in df.columns]
    if where:
        try:
            df = duckdb.connect().execute(f"SELECT * FROM df WHERE {where}").df()
        except duckdb.Error as e:
            raise PushbuttonError(f"--where {where!r}: {str(e).splitlines()[0]}; columns are: "
                                  f"{', '.join(df.columns)}") from None
    df = df.reset_index(drop=True)
    df.attrs["params"] = [c for c in params if c in df.columns]
    df.attrs["metrics"] = [c for c in metrics if c in df.columns]
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
