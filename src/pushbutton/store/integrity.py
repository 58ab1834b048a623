"""A damaged store is detected, never half-read.

Readers (`table.results`, `table.sql`, `table.series`, wrapped by `guarded`) turn a damaged
state database or an unreadable Parquet part into one StoreError that names the file and the fix,
and `check_read` compares what a reader got with the state: the task counts by state through the
table and through its indexes, and every done task must have its result row (the row of the
bundle its task row names, as readers match it). `doctor` looks at everything (integrity_check,
every part read in full, rows against the state, outcomes on disk not ingested); `pb repair`
(harvest/repair.py) fixes what it can.
"""
from __future__ import annotations

import functools
import re
import sqlite3
import time
from pathlib import Path

from pushbutton.core import names as N
from pushbutton.core.files import complete_lines
from pushbutton.store import partset, stateindex
from pushbutton.store.lock import ExperimentLock
from pushbutton.core.errors import PushbuttonError, StoreError

# what check_read reads in a connection set up by table._build: the task states (pb_task_id,
# pb_status, the bundle a done task's row must come from, the place in the space) and the rows
STATE_VIEW, STATE_BUNDLE, STATE_IDX, ROWS_VIEW = "_pb_state", "_bundle", "_pb_idx", "_pb_stored"
RETRIES = 5  # a reader whose files a compaction swapped away reads the new set
FIX = ("`pb doctor` says what is damaged; `pb repair` moves damaged parts aside, re-ingests "
       "outcomes still on disk and marks lost results pending for the next `pb run`")
DB_FIX = ("restore .pushbutton/state.sqlite from a backup, or salvage it with "
          "`sqlite3 state.sqlite .recover | sqlite3 recovered.sqlite` and put that in its place "
          "(`pb doctor` shows what SQLite reports)")
INDEX_ONLY = re.compile(r"missing from index|wrong # of entries in index|non-unique entry in "
                         r"index")


def rel_path(store_dir: Path | None, p) -> str:
    p = Path(p)
    if store_dir is not None:
        try:
            return str(p.relative_to(Path(store_dir).parent))
        except ValueError:
            pass
    return str(p)


def is_damage(e: BaseException) -> bool:
    """A SQLite error that means a damaged file (not a lock, a full disk or a read-only store)."""
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    msg = str(e).lower()
    if isinstance(e, sqlite3.OperationalError):
        return "malformed" in msg or "could not decode" in msg
    return not isinstance(e, (sqlite3.IntegrityError, sqlite3.ProgrammingError,
                              sqlite3.InterfaceError))


def db_error(store_dir: Path | None, e: BaseException) -> StoreError:
    path = rel_path(store_dir, Path(store_dir) / "state.sqlite") if store_dir else "state.sqlite"
    return StoreError(f"the state database {path} is damaged ({e}); nothing is shown rather "
                      f"than a partial table\n  fix: {DB_FIX}")


def _vanished(e: BaseException) -> bool:
    msg = str(e)
    return isinstance(e, FileNotFoundError) or "No files found" in msg or \
        "No such file" in msg or "does not exist" in msg


def store_fault(e: BaseException) -> bool:
    """A reader's error that comes from the store's files, not from the user's query."""
    return _vanished(e) or ".parquet" in str(e)


def guarded(fn):
    """A reader of the store: damage becomes one clear StoreError; a file that a compaction
    swapped away while it read makes it read the new set (RETRIES times)."""
    @functools.wraps(fn)
    def wrapper(store, *a, **kw):
        for attempt in range(RETRIES):
            try:
                return fn(store, *a, **kw)
            except PushbuttonError:
                raise
            except sqlite3.DatabaseError as e:
                if is_damage(e):
                    raise db_error(store.dir, e) from None
                raise
            except Exception as e:
                if _vanished(e) and attempt < RETRIES - 1:
                    time.sleep(0.02 * (attempt + 1))
                    continue
                bad = damaged_parts(store.dir)
                if bad:
                    raise parts_error(store.dir, bad) from None
                raise
    return wrapper


def parts_error(store_dir, bad) -> StoreError:
    lines = "\n".join(f"  {rel_path(store_dir, p)}: {why}" for p, why in bad[:10])
    more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    return StoreError(f"{len(bad)} results file{'s' if len(bad) > 1 else ''} cannot be read, so "
                      f"the table would be incomplete:\n{lines}{more}\n  fix: {FIX}")


# -- parts ----------------------------------------------------------------------------------
def unreadable(path) -> str | None:
    """Why a Parquet file cannot be read in full (None: it can)."""
    import pyarrow.parquet as pq
    try:
        f = pq.ParquetFile(path)
        for i in range(f.num_row_groups):
            f.read_row_group(i)
    except FileNotFoundError:
        return "listed in MANIFEST.json but missing"
    except Exception as e:  # pyarrow raises several kinds for damaged files
        return str(e).splitlines()[0][:200] or type(e).__name__
    return None


def folder_problems(folder: Path) -> dict:
    """manifest (None or why it is damaged), unreadable [(name, why)], leftovers [names]."""
    out = {"manifest": None, "unreadable": [], "leftovers": []}
    try:
        names = partset.listed(folder)
    except StoreError as e:
        out["manifest"] = str(e).splitlines()[0]
        names = None
    cur = partset.on_disk(folder) if names is None else names
    for n in cur:
        why = unreadable(folder / n)
        if why:
            out["unreadable"].append((n, why))
    if names is not None:
        out["leftovers"] = sorted(set(partset.on_disk(folder)) - set(names))
    return out


def damaged_parts(store_dir: Path) -> list[tuple[Path, str]]:
    """Unreadable listed parts (and damaged manifests) of every experiment."""
    bad = []
    for sub in ("results", "series"):
        base = Path(store_dir) / sub
        for folder in sorted(base.iterdir()) if base.is_dir() else ():
            if not folder.is_dir():
                continue
            pr = folder_problems(folder)
            if pr["manifest"]:
                bad.append((folder / partset.MANIFEST, pr["manifest"]))
            bad += [(folder / n, why) for n, why in pr["unreadable"]]
    return bad


# -- the check a reader makes ---------------------------------------------------------------
def _state_counts(path: Path, eid: int) -> tuple[dict, dict, int]:
    """Counts by state through the table and through the indexes, and the
    stored number of tasks, read in one snapshot on a connection of its own."""
    from pushbutton.store.database import _open_readonly  # also where the store's folder is read-only
    db = _open_readonly(path)
    try:
        db.execute("BEGIN")
        q = ("SELECT state, count(*) FROM tasks {} WHERE exp=? AND idx IS NOT NULL "
             "GROUP BY state")
        # the table itself, scanned in page order (10^6 tasks: 0.17 s; through the id index,
        # one random table lookup per task, it took 1.4 s), against the state index
        a = dict(db.execute(q.format("NOT INDEXED"), (eid,)).fetchall())
        # against the indexes: the states but done through the (partial) state index, done
        # through the (exp, id) index less the others (store/stateindex.py)
        b = stateindex.index_counts(db, eid)
        n = db.execute("SELECT n_tasks FROM experiments WHERE id=?", (eid,)).fetchone()
        db.execute("COMMIT")
        return a, b, (n[0] if n else None)
    finally:
        db.close()


def check_state(store, eid: int, seen: dict | None = None) -> None:
    """The task table and its indexes agree (a damaged page makes them differ silently)."""
    if seen is not None:
        idx = {k: v for k, v in store.index_counts(eid).items() if v}
        row = store.db.execute("SELECT n_tasks FROM experiments WHERE id=?", (eid,)).fetchone()
        if idx == {k: v for k, v in seen.items() if v} and \
                (row is None or row[0] == sum(idx.values())):
            return
    # (else a driver may have committed between the two reads: compare in one snapshot)
    a, b, n = _state_counts(store.dir / "state.sqlite", eid)
    if a == b and (n is None or sum(a.values()) == n):
        return
    _disagree(store, a, b, n)


def _disagree(store, a: dict, b: dict, n) -> None:
    raise StoreError(
        f"the state database {rel_path(store.dir, store.dir / 'state.sqlite')} is damaged: its task "
        f"table and its indexes disagree (tasks by state: {_fmt(a)} through the table, "
        f"{_fmt(b)} through the index, {n} registered); nothing is shown rather than a partial "
        f"table\n  fix: `pb repair` rebuilds the indexes when only they are damaged; else "
        f"{DB_FIX}")


FULL_CHECK_MAX = 200_000  # up to this many tasks (about 0.05 s) `pb status` also counts the table


def state_counts(store, eid: int) -> dict:
    """Counts by state for `pb status`: the kept counts (store/counts.py: they sum to the
    registered tasks and every small one agrees with the state index), and, for experiments of
    up to FULL_CHECK_MAX tasks or kept counts that do not hold up, the table against its
    indexes as check_state does (a damaged store raises StoreError)."""
    from pushbutton.store.database import STATES
    kept = store.kept_counts(eid)
    if kept is not None and sum(kept.values()) > FULL_CHECK_MAX:
        return kept
    a, b, n = _state_counts(store.dir / "state.sqlite", eid)
    if a != b or (n is not None and sum(a.values()) != n):
        _disagree(store, a, b, n)
    return {**dict.fromkeys(STATES, 0), **a}


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def check_read(store, eid: int, name: str, con, whole: bool = True) -> None:
    """After table._build set up its views in `con`: the states it read agree with the
    indexes, and every done task of the space has its row, matched the way readers match it
    (task id and the bundle its task row names). Not `whole` (the first rows alone, picked
    through the state index): the experiment's counts hold up (state_counts) and every done
    task read has its row."""
    if whole:
        seen = dict(con.execute(f"SELECT {N.STATUS}, count(*) FROM {STATE_VIEW} WHERE "
                                f"{STATE_IDX} IS NOT NULL GROUP BY {N.STATUS}").fetchall())
        check_state(store, eid, seen)
    else:
        state_counts(store, eid)
    n, example = con.execute(
        f"SELECT count(*), min(t.{N.TASK_ID}) FROM {STATE_VIEW} t WHERE t.{N.STATUS} = 'done' "
        f"AND t.{STATE_IDX} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {ROWS_VIEW} r WHERE "
        f"r.{N.TASK_ID} = t.{N.TASK_ID} AND r.{N.BUNDLE} = t.{STATE_BUNDLE})").fetchone()
    if n:
        folder = store.dir / "results" / name
        bad = damaged_parts(store.dir)
        if bad:
            raise parts_error(store.dir, bad)
        # a damaged task row can read as a done task without a row (a NULL id, a garbled
        # bundle) while the counts agree: the state database is checked before the results
        # are blamed (only here, on the way to an error)
        said = [r[0] for r in store.db.execute("PRAGMA integrity_check(5)")]
        if said != ["ok"]:
            index_only = all(INDEX_ONLY.search(p) for p in said)
            raise StoreError(
                f"the state database {rel_path(store.dir, store.dir / 'state.sqlite')} is "
                f"damaged ({'; '.join(said)}); nothing is shown rather than a partial table\n"
                f"  fix: {'`pb repair` rebuilds the indexes' if index_only else DB_FIX}")
        raise StoreError(f"{n} done task{'s' if n > 1 else ''} of '{name}' have no result row in "
                         f"{rel_path(store.dir, folder)} (e.g. task {example}): a results file is "
                         f"missing; nothing is shown rather than a partial table\n  fix: {FIX}")


# -- doctor ---------------------------------------------------------------------------------
def integrity_check(path: Path) -> list[str]:
    db = sqlite3.connect(path, timeout=60)
    try:
        return [r[0] for r in db.execute("PRAGMA integrity_check(50)")]
    finally:
        db.close()


def _present(folder: Path, names) -> set:
    """(task, bundle) pairs of the rows in the given readable parts."""
    import duckdb
    if not names:
        return set()
    lst = [str(folder / n) for n in names]
    con = duckdb.connect()
    try:
        cols = {r[0] for r in con.execute("SELECT name FROM parquet_schema(?)", [lst]).fetchall()}
        bcol = f", {N.BUNDLE}" if N.BUNDLE in cols else ", NULL"
        return set(con.execute(f"SELECT DISTINCT {N.TASK_ID}{bcol} FROM read_parquet(?, "
                               "union_by_name=true)", [lst]).fetchall())
    finally:
        con.close()


def lost_rows(store, eid: int, folder: Path, readable) -> dict[str, list[str]]:
    """Done tasks whose result row is in no readable part: {bundle: [task ids]}."""
    present = _present(folder, readable)
    by_task = {t for t, _ in present}
    lost: dict[str, list[str]] = {}
    for tid, bid in store.db.execute("SELECT id, bundle FROM tasks NOT INDEXED WHERE exp=? "
                                     "AND state='done'", (eid,)):
        if (tid, bid) not in present and not (tid in by_task and (tid, None) in present):
            lost.setdefault(bid, []).append(tid)
    return lost


def _uningested(store, eid: int) -> list[tuple[str, int]]:
    """Bundles that are over whose outcomes.jsonl holds complete lines past what was ingested."""
    out = []
    for bid, d, off in store.db.execute("SELECT id, dir, ingested FROM bundles WHERE exp=? AND "
                                        "state NOT IN ('created','submitted')", (eid,)):
        if d and len(complete_lines(Path(d) / "outcomes.jsonl", off or 0)):
            out.append((bid, off or 0))
    return out


def doctor(root) -> dict:
    """Every check; {"problems": [{"what", "fix"}], "notes": [...], "ok": bool}."""
    from pushbutton.store.database import DIRNAME, Store
    sd = Path(root) / DIRNAME
    path = sd / "state.sqlite"
    problems, notes = [], []
    report = {"problems": problems, "notes": notes}
    try:
        res = integrity_check(path)
    except sqlite3.DatabaseError as e:
        problems.append({"what": f"{rel_path(sd, path)} is damaged: SQLite cannot read it ({e})",
                         "fix": DB_FIX.split(" (`pb doctor`")[0]})
        report["ok"] = False
        return report
    if res != ["ok"]:
        index_only = all(INDEX_ONLY.search(m) for m in res)
        problems.append({"what": f"{rel_path(sd, path)} fails SQLite's integrity check: "
                                 + "; ".join(res[:5]),
                         "fix": "`pb repair` rebuilds the indexes" if index_only else DB_FIX})
        if not index_only:
            report["ok"] = False
            return report  # what follows reads the state, which cannot be trusted
    try:
        store = Store(root, create=False)
        exps = store.experiments()
    except sqlite3.DatabaseError as e:
        problems.append({"what": f"{rel_path(sd, path)}: {e}", "fix": DB_FIX})
        report["ok"] = False
        return report
    for e in exps:
        _check_experiment(store, sd, e["id"], e["name"], problems, notes)
    store.close()
    report["ok"] = not problems
    return report


def _check_experiment(store, sd: Path, eid: int, name: str, problems: list, notes: list) -> None:
    """doctor's checks of one experiment's parts, result rows and bundles."""
    if ExperimentLock(store, eid, name).held_by_other():
        notes.append(f"{name}: a driver is running it; what it is writing may look "
                     "unfinished")
    for sub in ("results", "series"):
        folder = sd / sub / name
        pr = folder_problems(folder)
        if pr["manifest"]:
            problems.append({"what": pr["manifest"], "fix": "`pb repair`"})
        for n, why in pr["unreadable"]:
            problems.append({"what": f"{rel_path(sd, folder / n)} cannot be read ({why})",
                             "fix": "`pb repair` moves it aside and restores or recomputes "
                                    "its rows"})
        if pr["leftovers"]:
            notes.append(f"{rel_path(sd, folder)}: {len(pr['leftovers'])} file(s) not in "
                         "MANIFEST.json (left by an interrupted ingest or compaction; "
                         "readers ignore them, `pb repair` removes them)")
        if sub == "results":
            bad = {n for n, _ in pr["unreadable"]}
            readable = [n for n in partset.current(folder) if n not in bad] \
                if not pr["manifest"] else [n for n in partset.on_disk(folder)
                                            if n not in bad]
            lost = lost_rows(store, eid, folder, readable)
            n_lost = sum(len(v) for v in lost.values())
            if n_lost:
                on_disk = sum(len(v) for b, v in lost.items()
                              if b and (sd / "bundles" / b / "outcomes.jsonl").exists())
                problems.append({
                    "what": f"{name}: {n_lost} done task(s) have no result row in "
                            f"{rel_path(sd, folder)}",
                    "fix": f"`pb repair` re-ingests {on_disk} from outcomes still on disk "
                           f"and marks {n_lost - on_disk} pending for the next `pb run`"})
    un = _uningested(store, eid)
    if un:
        notes.append(f"{name}: {len(un)} finished bundle(s) hold outcome lines that were "
                     f"not ingested (e.g. {un[0][0]})")
