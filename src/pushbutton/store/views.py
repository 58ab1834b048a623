"""One results table per experiment, and SQL over it (DuckDB).

The current result of a task has one definition, built in one place (`_build`): the task row in
SQLite decides the task's state, and a done task's parameters and metrics come from the one
Parquet row its task row names (same task id and bundle) — never simply the newest row. That
relation is the `results` view of `pb sql` and what `exp.results()` / `pb results` return; `pb
status` counts the same task rows. Results of earlier runs stay in the store, apart:
`results(run=N)` (`pb results --run N`) is what run N produced.

Bookkeeping columns carry the pb_ prefix (names.py); parameters and metrics keep their names.
A `where` is one SQL expression (checked), and every connection built here is read-only on the
store: no file outside this experiment's results can be read, none written.
"""
from __future__ import annotations

import json
import os

from pushbutton.core import names as N
from pushbutton.store import head as H
from pushbutton.store import parts as R
from pushbutton.core.errors import PushbuttonError
from pushbutton.store.integrity import check_read, guarded, store_fault

TAIL = N.TAIL
_IDX = "_pb_idx"  # space order, kept out of what users see


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- safety ------------------------------------------------------------------------------------
def check_where(where: str, what: str = "--where") -> str:
    """A `where` must be ONE SQL expression: no ';', no comments, no parenthesis closing what
    it did not open (that would let it add clauses or statements to the query around it)."""
    import duckdb
    if not isinstance(where, str) or not where.strip():
        raise PushbuttonError(f"{what} is empty; give a condition, e.g. \"n > 100\"")
    try:
        toks = duckdb.tokenize(where)
    except Exception as e:  # noqa: BLE001 - the tokenizer's own complaint
        raise PushbuttonError(f"{what} {where!r} cannot be read: {e}") from None
    depth = 0
    for i, (off, kind) in enumerate(toks):
        end = toks[i + 1][0] if i + 1 < len(toks) else len(where)
        tok = where[off:end]
        if kind == duckdb.token_type.comment:
            raise PushbuttonError(f"{what} {where!r}: comments are not allowed; give one "
                                  "condition, e.g. \"n > 100 AND pb_status = 'done'\"")
        if kind != duckdb.token_type.operator:
            continue
        for ch in tok:
            if ch == ";":
                raise PushbuttonError(f"{what} {where!r} must be one expression (no ';'); use "
                                      "`pb sql` for queries")
            depth += (ch == "(") - (ch == ")")
            if depth < 0:
                raise PushbuttonError(f"{what} {where!r} closes a parenthesis it did not open; "
                                      "it must be one expression")
    try:
        stmts = duckdb.extract_statements(f"SELECT 1 FROM t WHERE ({where})")
    except duckdb.Error as e:
        raise PushbuttonError(f"{what} {where!r} is not a valid SQL expression: "
                              f"{str(e).splitlines()[0]}") from None
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT:
        raise PushbuttonError(f"{what} {where!r} must be one expression")
    return where


def _sandbox(store, name: str):
    """An in-memory DuckDB connection that may read this experiment's Parquet folders and
    nothing else on disk (no writes, no ATTACH, no extensions); locked once set up."""
    import duckdb
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    dirs = [str(store.dir / sub / name) + os.sep for sub in ("results", "series", "gathered")]
    con.execute("SET allowed_directories = [" + ", ".join(_lit(d) for d in dirs) + "]")
    con.execute("SET enable_external_access = false")
    con.execute("SET enable_progress_bar = false")  # (DuckDB draws one on long queries)
    return con


def _lock(con) -> None:
    con.execute("SET lock_configuration = true")


# -- the relation ------------------------------------------------------------------------------
def _state(store, eid: int, only=None):
    """Every task's id, place in the space, state, and (done ones) the bundle of its result
    (`only`: of these task ids alone). Read in batches into Arrow columns: no Python object per
    task is kept."""
    import pyarrow as pa
    if only is None:
        from pushbutton.store.statecols import read_states
        got = read_states(store.db, eid, _IDX)
        if got is not None:
            return got
    # the whole table in page order (through the (exp, id) index it is one random lookup per
    # task: 10^6 tasks 5.7 s against 0.6 s here)
    q = ("SELECT id, idx, state, CASE WHEN state='done' THEN bundle END FROM tasks "
         f"{'NOT INDEXED ' if only is None else ''}WHERE exp=?")
    args: tuple = (eid,)
    if only is not None:
        q += f" AND id IN ({','.join('?' * len(only))})"
        args += tuple(only)
    cur = store.db.execute(q, args)
    batches = []
    types = (pa.string(), pa.int64(), pa.string(), pa.string())
    while True:
        rows = cur.fetchmany(200_000)
        if not rows:
            break
        cols = list(zip(*rows))
        batches.append(pa.record_batch([pa.array(c, t) for c, t in zip(cols, types)],
                                       names=[N.TASK_ID, _IDX, N.STATUS, "_bundle"]))
    if not batches:
        return pa.table({N.TASK_ID: pa.array([], pa.string()), _IDX: pa.array([], pa.int64()),
                         N.STATUS: pa.array([], pa.string()),
                         "_bundle": pa.array([], pa.string())})
    return pa.Table.from_batches(batches)


def _not_done(store, eid: int, only=None):
    """Parameters and the state's details of the scheduled tasks that are not done (`only`: of
    these task ids alone)."""
    import pandas as pd
    node = store.column_or_null("tasks", "node")
    q = (f"SELECT id, attempts, error_kind, error, t0, t1, host, {node}, run, params FROM tasks "
         "WHERE exp=? AND idx IS NOT NULL AND state != 'done'")
    args: tuple = (eid,)
    if only is not None:
        q += f" AND id IN ({','.join('?' * len(only))})"
        args += tuple(only)
    rows = store.db.execute(q, args).fetchall()
    recs = []
    for tid, att, ek, err, t0, t1, host, nodename, run, params in rows:
        d = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
             for k, v in json.loads(params).items()}
        d.update({"_tid": tid, "_attempts": att, "_error_kind": ek, "_error": err,
                  "_duration": (t1 - t0) if (t0 and t1) else None, "_host": host,
                  "_node": nodename, "_run": run, "_t1": t1})
        recs.append(d)
    nd = pd.DataFrame.from_records(recs) if recs else pd.DataFrame(
        {"_tid": pd.Series([], dtype=object)})
    for c in ("_attempts", "_error_kind", "_error", "_duration", "_host", "_node", "_run",
              "_t1"):
        if c not in nd.columns:
            nd[c] = pd.Series([None] * len(nd), dtype=object)
    return nd


def _types(con, view: str) -> dict:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {view}").fetchall()}


def _build(con, store, eid: int, name: str, run: int | None = None, only=None):
    """Create the view _pb_results (the results relation plus _pb_idx) in `con`; returns
    (parameter names, metric names). `only`: the relation of these task ids alone (the same
    rows as in the whole relation; no run)."""
    folder = store.dir / "results" / name
    # the states before the parts: ingest lists a part before it commits its tasks as done, so
    # every done task read here has its row in the parts listed after
    if only is None:
        state = _state(store, eid, only)
        meta = R.columns_meta(folder)
    else:  # a few tasks: no pandas, no pyarrow (head.py)
        H.put_state(con, store, eid, only)
        meta = H.columns_meta(con, R.parts(folder))
    stored = R.latest_sql(folder)
    if stored and only is not None:  # the parts' reader skips the other tasks' rows
        stored = (f"SELECT * FROM ({stored}) WHERE {N.TASK_ID} IN "
                  f"({', '.join(_lit(t) for t in only) or 'NULL'})")
    con.execute(f"CREATE VIEW _pb_stored AS {stored}" if stored else
                f"CREATE VIEW _pb_stored AS SELECT NULL::VARCHAR AS {N.TASK_ID}, "
                f"NULL::VARCHAR AS {N.BUNDLE}, NULL::BIGINT AS {N.ATTEMPTS}, "
                f"NULL::DOUBLE AS {N.DURATION}, NULL::VARCHAR AS {N.HOST}, "
                f"NULL::VARCHAR AS {N.NODE}, NULL::BIGINT AS {N.RUN_ID}, NULL::DOUBLE AS {N.FINISHED_AT} WHERE false")
    if only is None:
        con.register("_pb_state", state)
    stored_cols = _types(con, "_pb_stored")
    # parts written before pb_node existed have no such column (all of them, or a single
    # compacted file of them, leave it out of the union)
    r_node = f"r.{N.NODE}" if N.NODE in stored_cols else "NULL::VARCHAR"
    numbers = store.run_numbers(eid)
    if run is not None:
        params = [c for c in meta["params"] if c in stored_cols]
        metrics = [c for c in meta["metrics"] if c in stored_cols and c not in params]
        cols = [f"r.{N.TASK_ID}"] + [f"r.{_q(c)}" for c in params + metrics]
        cols += [f"'done' AS {N.STATUS}", f"NULL::VARCHAR AS {N.ERROR_KIND}",
                 f"NULL::VARCHAR AS {N.ERROR}"]
        cols += [f"r.{c}" for c in (N.ATTEMPTS, N.DURATION, N.HOST)]
        cols += [f"{r_node} AS {N.NODE}", f"{_numbered(f'r.{N.RUN_ID}', numbers)} AS {N.RUN_ID}",
                 f"r.{N.FINISHED_AT}"]
        cols.append(f"t.{_IDX} AS {_IDX}")
        con.execute(
            f"CREATE VIEW _pb_results AS SELECT {', '.join(cols)} FROM (SELECT * FROM "
            f"_pb_stored WHERE {N.RUN_ID} = {int(run)} QUALIFY row_number() OVER (PARTITION BY "
            f"{N.TASK_ID} ORDER BY {N.FINISHED_AT} DESC) = 1) r LEFT JOIN _pb_state t "
            f"ON t.{N.TASK_ID} = r.{N.TASK_ID}")
        return params, metrics
    if only is not None and H.none_pending(store, eid, only):
        H.put_no_pending(con)
    else:
        con.register("_pb_pending", _not_done(store, eid, only))
    nd_types = _types(con, "_pb_pending")
    nd_params = [c for c in nd_types if not c.startswith("_")]
    params = [c for c in meta["params"] if c in stored_cols]
    params += [c for c in nd_params if c not in params]
    metrics = [c for c in meta["metrics"] if c in stored_cols and c not in params]

    def param(c):
        stored = f"r.{_q(c)}" if c in stored_cols else None
        pending = f"nd.{_q(c)}" if c in nd_params else None
        if stored and pending and stored_cols[c] != nd_types[c]:  # typed differently: as text
            stored, pending = f"CAST({stored} AS VARCHAR)", f"CAST({pending} AS VARCHAR)"
        return f"COALESCE({stored}, {pending})" if stored and pending else (stored or pending)
    cols = [f"t.{N.TASK_ID}"] + [f"{param(c)} AS {_q(c)}" for c in params]
    cols += [f"r.{_q(c)}" for c in metrics]
    cols += [f"t.{N.STATUS}", f"nd._error_kind AS {N.ERROR_KIND}", f"nd._error AS {N.ERROR}",
             f"COALESCE(r.{N.ATTEMPTS}, nd._attempts) AS {N.ATTEMPTS}",
             f"COALESCE(r.{N.DURATION}, nd._duration) AS {N.DURATION}",
             f"COALESCE(r.{N.HOST}, nd._host) AS {N.HOST}",
             f"COALESCE({r_node}, nd._node) AS {N.NODE}",
             f"{_numbered(f'COALESCE(r.{N.RUN_ID}, nd._run)', numbers)} AS {N.RUN_ID}",
             f"COALESCE(r.{N.FINISHED_AT}, nd._t1) AS {N.FINISHED_AT}", f"t.{_IDX}"]
    # a done task's result is the row of the bundle its task row names; for any other task
    # t._bundle is NULL, so no stored row (of an earlier run) can join
    con.execute(f"CREATE VIEW _pb_results AS SELECT {', '.join(cols)} FROM _pb_state t "
                f"LEFT JOIN _pb_stored r ON r.{N.TASK_ID} = t.{N.TASK_ID} AND "
                f"r.{N.BUNDLE} = t._bundle LEFT JOIN _pb_pending nd ON nd._tid = t.{N.TASK_ID} "
                f"WHERE t.{_IDX} IS NOT NULL")
    return params, metrics


def _numbered(expr: str, numbers: dict) -> str:
    """SQL for the run number (among the experiment's runs: what `pb history` says) of the
    store-wide run id `expr`."""
    if not numbers:
        return "NULL::BIGINT"
    return (f"(CASE {expr} " + " ".join(f"WHEN {int(i)} THEN {int(n)}"
                                        for i, n in numbers.items()) + " END)")


def _check_run(store, eid: int, run) -> int | None:
    """The store-wide id of the experiment's run number `run` (as `pb history` numbers it)."""
    if run is None:
        return None
    ids = {n: rid for rid, n in store.run_numbers(eid).items()}
    try:
        run = int(run)
    except (TypeError, ValueError):
        raise PushbuttonError(f"run {run!r} is not a run number; `pb history` lists them") \
            from None
    if run not in ids:
        raise PushbuttonError(f"this experiment has no run {run}; its runs are: "
                              f"{', '.join(map(str, ids)) or 'none yet'} (`pb history`)")
    return ids[run]


@guarded
def results(store, eid: int, name: str, where: str | None = None, all_tasks: bool = True,
            limit: int | None = None, run: int | None = None, frame: bool = True):
    """One row per task of the current space, in space order: pb_task_id, the parameters, the
    metrics, then pb_status ... pb_finished_at. With `run`, the rows that run produced
    (successful ones; earlier results of tasks run again later) instead. Not `frame`: the
    first rows alone may come as a head.Rows (no pandas) where they print the same."""
    import duckdb
    run = _check_run(store, eid, run)
    if where:
        check_where(where)
    con = _sandbox(store, name)
    # the first rows in space order alone, when that is all that is asked: the tasks are picked
    # through the state index and only their rows are read (10^7 tasks: well under a second)
    only = _first_tasks(store, eid, int(limit), all_tasks) if limit and not where and \
        run is None else None
    params, metrics = _build(con, store, eid, name, run, only=only)
    check_read(store, eid, name, con, whole=only is None)  # a damaged store is never half-read
    _lock(con)
    conds = ([] if all_tasks else [f"{N.STATUS} = 'done'"]) + ([f"({where})"] if where else [])
    q = (f"SELECT * EXCLUDE ({_IDX}) FROM _pb_results"
         + (f" WHERE {' AND '.join(conds)}" if conds else "")
         + f" ORDER BY {_IDX} NULLS LAST, {N.TASK_ID}"
         + (f" LIMIT {int(limit)}" if limit else ""))
    try:
        if only is not None and not frame:
            got = H.rows(con, q, params)
            if got is not None:
                got.attrs.update(params=params, metrics=metrics)
                return got
        df = con.execute(q).df()
    except duckdb.Error as e:
        if not where or store_fault(e):
            raise
        raise PushbuttonError(f"--where {where!r}: {str(e).splitlines()[0]}; columns are: "
                              f"{N.TASK_ID}, {', '.join(params + metrics)}, {', '.join(TAIL)}") \
            from None
    for c in params:
        if df[c].dtype == object:
            df[c] = _infer(df[c])
    df.attrs["params"] = params
    df.attrs["metrics"] = metrics
    return df


def _first_tasks(store, eid: int, limit: int, all_tasks: bool) -> list[str]:
    """The ids of the first `limit` scheduled tasks in space order (done ones unless
    `all_tasks`), through the state index: a few index steps per state. It holds the done
    tasks among the first HEAD points only (store/stateindex.py); where those do not settle
    the answer, one pass over the table does."""
    from pushbutton.store import stateindex as SI
    from pushbutton.store.database import DONE, STATES
    got = []
    for st in (STATES if all_tasks else (DONE,)):
        cond = SI.IN_HEAD if st == DONE else SI.NOT_DONE
        got += store.db.execute("SELECT idx, id FROM tasks INDEXED BY tasks_state WHERE exp=? "
                                f"AND state=? AND idx IS NOT NULL AND {cond} ORDER BY idx "
                                "LIMIT ?", (eid, st, limit)).fetchall()
    first = sorted(got)[:limit]
    if len(first) < limit or first[-1][0] >= SI.HEAD:  # a done task past HEAD may come first
        first = store.db.execute("SELECT idx, id FROM tasks NOT INDEXED WHERE exp=? AND idx IS "
                                 f"NOT NULL{'' if all_tasks else ' AND state=?'} ORDER BY idx "
                                 "LIMIT ?", (eid, limit) if all_tasks else
                                 (eid, DONE, limit)).fetchall()
    return [t for _, t in first]


def _infer(col):
    import pandas as pd
    try:
        return pd.to_numeric(col)
    except (ValueError, TypeError):
        return col.infer_objects()


@guarded
def series(store, eid: int, name: str):
    """Per-step rows: pb_task_id, pb_step, pb_time, the logged metrics, then the task's
    parameters (a per-step metric named like a parameter keeps its values; that parameter is
    not joined here)."""
    import duckdb
    import pandas as pd
    files = R.parts(store.dir / "series" / name)
    if not files:
        return pd.DataFrame(columns=[N.TASK_ID, N.STEP, N.TIME])
    lst = ", ".join(_lit(f) for f in files)
    s = duckdb.connect().execute(f"SELECT * FROM read_parquet([{lst}], union_by_name=true) "
                                 f"ORDER BY {N.TASK_ID}, {N.STEP}, {N.TIME}").df()
    params = _params_frame(store, eid)
    params = params[[c for c in params.columns if c == N.TASK_ID or c not in s.columns]]
    metrics = [c for c in s.columns if not N.reserved(c)]
    out = s.merge(params, on=N.TASK_ID, how="left")
    out.attrs["params"] = [c for c in params.columns if c != N.TASK_ID]
    out.attrs["metrics"] = metrics
    return out


@guarded
def where_ran(store, name: str, tid: str, bundle: str) -> tuple:
    """(pb_host, pb_node) of a task's stored result from `bundle` ((None, None) if none; the
    node is None in parts written before pb_node existed)."""
    import duckdb
    files = R.parts(store.dir / "results" / name)
    if not files:
        return None, None
    con = duckdb.connect()
    con.execute("CREATE VIEW r AS SELECT * FROM read_parquet(["
                + ", ".join(_lit(f) for f in files) + "], union_by_name=true)")
    node = N.NODE if N.NODE in _types(con, "r") else "NULL"
    row = con.execute(f"SELECT {N.HOST}, {node} FROM r WHERE {N.TASK_ID} = ? AND "
                      f"{N.BUNDLE} = ? LIMIT 1", [tid, bundle]).fetchone()
    return tuple(row) if row else (None, None)


def _params_frame(store, eid):
    import pandas as pd
    rows = store.db.execute("SELECT id, params FROM tasks NOT INDEXED WHERE exp=?",
                            (eid,)).fetchall()
    recs = []
    for tid, p in rows:
        d = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
             for k, v in json.loads(p).items()}
        d[N.TASK_ID] = tid
        recs.append(d)
    return pd.DataFrame.from_records(recs) if recs else pd.DataFrame(columns=[N.TASK_ID])


def connect(store, experiment: str | None = None, query: str = ""):
    """A read-only DuckDB connection with the views results (exactly what `exp.results()`
    returns), tasks and series for one experiment."""
    import re

    exps = store.experiments()
    if not exps:
        raise PushbuttonError("no experiments in this project yet; run one with `pb run`")
    names = [e["name"] for e in exps]
    if experiment is None:
        experiment = names[-1]
    if experiment not in names:
        raise PushbuttonError(f"no experiment '{experiment}'; known: {', '.join(names)}")
    eid = next(e["id"] for e in exps if e["name"] == experiment)
    con = _sandbox(store, experiment)
    _build(con, store, eid, experiment)
    con.execute(f"CREATE VIEW results AS SELECT * EXCLUDE ({_IDX}) FROM _pb_results "
                f"ORDER BY {_IDX}")
    files = R.parts(store.dir / "series" / experiment)
    if files:
        lst = ", ".join(_lit(f) for f in files)
        con.execute(f"CREATE VIEW series AS SELECT * FROM read_parquet([{lst}], "
                    "union_by_name=true)")
    else:
        con.execute(f"CREATE VIEW series AS SELECT NULL::VARCHAR AS {N.TASK_ID}, "
                    f"NULL::DOUBLE AS {N.STEP}, NULL::DOUBLE AS {N.TIME} WHERE false")
    from pushbutton.store import gathered  # pb gather's tables: a view per gathered file
    gathered.add_views(con, store, eid, experiment)
    if re.search(r"\btasks\b", query or "", re.I):  # loaded only when asked for
        import pandas as pd
        node = store.column_or_null("tasks", "node")
        cur = store.db.execute("SELECT id, idx, state, attempts, error_kind, error, "
                               f"t0, t1, host, {node}, run, params FROM tasks NOT INDEXED "
                               "WHERE exp=?",
                               (eid,))
        tdf = pd.DataFrame.from_records(cur.fetchall(), columns=[
            N.TASK_ID, "pb_idx", N.STATUS, N.ATTEMPTS, N.ERROR_KIND, N.ERROR, "pb_t0",
            "pb_t1", N.HOST, N.NODE, N.RUN_ID, "pb_params"])
        tdf[N.RUN_ID] = tdf[N.RUN_ID].map(store.run_numbers(eid)).astype("Int64")
        con.register("tasks", tdf)
    _lock(con)
    return con


_READ_ONLY = ("SELECT", "EXPLAIN")


def check_query(query: str) -> None:
    """`pb sql` runs one read-only query: SELECT (WITH, FROM-first, DESCRIBE, SUMMARIZE) or
    EXPLAIN. COPY, ATTACH, INSTALL, SET, CREATE ... are refused before anything runs."""
    import duckdb
    try:
        stmts = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise PushbuttonError(f"SQL error: {str(e).splitlines()[0]}") from None
    if len(stmts) != 1:
        raise PushbuttonError(f"pb sql runs one query, got {len(stmts)} statements")
    kind = stmts[0].type.name
    if kind not in _READ_ONLY:
        raise PushbuttonError(
            f"pb sql is read-only: {kind} statements are refused; run a SELECT over results, "
            "tasks or series (to write a file: pb results --format csv|json|parquet -o FILE)")


@guarded
def sql(store, query: str, experiment: str | None = None):
    import duckdb
    check_query(query)
    con = connect(store, experiment, query)
    try:
        return con.execute(query).df()
    except duckdb.PermissionException as e:
        raise PushbuttonError(f"pb sql reads only this experiment's results: "
                              f"{str(e).splitlines()[0]}") from None
    except duckdb.Error as e:
        if store_fault(e):
            raise
        raise PushbuttonError(f"SQL error: {str(e).splitlines()[0]}\n  tables: results, tasks, "
                              "series; e.g. SELECT n, avg(error) FROM results GROUP BY n") from None
