"""The Python API: `Experiment(...)`, `load("experiment.toml")`, `exp.run()`, `exp.results()`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pushbutton.core import ids
from pushbutton.spec import model as specmod
from pushbutton.core.errors import PushbuttonError, SpecError
from pushbutton.store import location
from pushbutton.store.database import DIRNAME, Store
from pushbutton.store.registration import BIG_SPACE, ticker as _ticker


def _target_of(fn) -> tuple[str, Path]:
    """'module:qualname' for a callable, importable by a worker in another process."""
    mod = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", "")
    if "<locals>" in qual or "<lambda>" in qual:
        raise SpecError(f"{qual} cannot be run by a worker: define it at the top level of a "
                        ".py file", key="function",
                        fix="move the function to module level, e.g. in task.py")
    module = sys.modules.get(mod)
    file = getattr(module, "__file__", None)
    if mod == "__main__" or mod is None:
        if not file:
            raise SpecError("a function defined interactively cannot be imported by a worker",
                            key="function", fix="put it in a .py file and import it")
        return f"{Path(file).name}:{qual}", Path(file).resolve().parent
    root = Path(file).resolve().parent if file else Path.cwd()
    for _ in mod.split(".")[1:]:
        root = root.parent
    return f"{mod}:{qual}", root


def _check_param_names(space, spec_file) -> None:
    """pb_ names are pushbutton's own columns (names.py): a parameter cannot take one."""
    from pushbutton.core.names import PREFIX
    bad = [n for n in space.names if isinstance(n, str) and n.startswith(PREFIX)]
    if bad:
        raise SpecError(f"parameter name {bad[0]!r} starts with {PREFIX!r}, which is reserved for "
                        "pushbutton's own columns (pb_status, pb_task_id, ...)", file=spec_file,
                        key="space", fix=f"rename the parameter, e.g. "
                                                    f"{bad[0][len(PREFIX):] or 'x'!r}")



class _SayRegistering:
    """The registration of a big space on stderr: a line when it starts, one when it ends."""

    def __init__(self):
        self.said = self.ended = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.said:
            self.said = True
            print(f"registering {total:,} tasks ..." if total is not None else
                  "registering the tasks ...", file=sys.stderr)
        elif total is not None and done >= total and not self.ended:
            self.ended = True
            print(f"registered {total:,} tasks", file=sys.stderr)


class Experiment:
    """An experiment: what to run, over which parameter space, with which resources."""

    def __init__(self, name: str, function=None, command: list[str] | None = None,
                 space=None, *, description: str = "", timeout=None, retries: int | None = None,
                 retry_on: list[str] | None = None, cpus: int = 1, memory=None, gpus: int = 0,
                 workers: int | None = None, bundle_size: int = 0, units: dict | None = None,
                 figures: list[dict] | None = None, metrics: dict | None = None,
                 root=None, project=None, path=(), target: str = "local",
                 sbatch: str | None = None, spec_file: str | None = None,
                 space_dict: dict | None = None, max_tasks: int | None = None,
                 task_folder: bool = False):
        from pushbutton.spec.space import Space
        root_guess = None
        if callable(function):
            function, root_guess = _target_of(function)
        data = {"name": name, "description": description, "function": function,
                "command": command, "path": [str(p) for p in path],
                "space": space_dict if space_dict is not None else {"python": True},
                "resources": {"timeout": timeout, "cpus": cpus, "memory": memory, "gpus": gpus},
                "run": {"workers": workers, "bundle_size": bundle_size, "target": target,
                        "sbatch": sbatch, **({} if max_tasks is None else
                                             {"max_tasks": max_tasks})},
                "units": units or {}, "figures": figures or [], "metrics": metrics or {}}
        if retries is not None:  # else the spec's default (infrastructure failures: once)
            data["resources"]["retries"] = retries
        if retry_on is not None:
            data["resources"]["retry_on"] = retry_on
        self.spec = specmod.validate(data, file=spec_file)  # [[figures]] included
        if space is None:
            raise SpecError("no parameter space", file=spec_file, key="space",
                            fix="pass space=pushbutton.grid(n=[1, 2, 3])")
        if isinstance(space, dict):
            space = Space.from_dict(space, file=spec_file, key="space")
        _check_param_names(space, spec_file)
        self.space = space
        self.spec_file = spec_file
        self.root = Path(root or root_guess or Path.cwd()).resolve()
        # the store: the one at or above the spec's folder (not the shell's); none is created
        # until a run needs it (store/location.py)
        if project:
            self.project = Path(project).resolve()
        else:
            start = Path(spec_file).resolve().parent if spec_file else Path.cwd()
            self.project = location.root_for(start)[0]
        # the space's identity: its written form (a where filter is counted only when needed)
        self.space_hash = ids.id_of_canonical(ids.canonical(space_dict)) \
            if space_dict is not None else None
        if self.spec.command:
            used = specmod.placeholders(self.spec.command, spec_file)
            unknown = used - set(self.space.names)
            if unknown:
                raise SpecError(f"placeholder {{{sorted(unknown)[0]}}} is not a parameter",
                                file=spec_file, key="command",
                                fix=f"parameters are: {', '.join(self.space.names)}")
        # a command task runs in its own fresh folder holding the root's files (pb parrun)
        self.task_folder = bool(task_folder)
        self._store = None
        self._checked_spec = False

    @property
    def space_key(self) -> str | None:
        """What the store records of a registered space: its written form's hash and size."""
        return f"{self.space_hash}:{len(self.space)}" if self.space_hash else None

    preflight_done = False  # True once the function / program was checked (pb run does it)
    preflight_started = None  # the check's probe, started early (pb run: preflight.start)

    # -- what the driver needs -------------------------------------------------------------
    name = property(lambda self: self.spec.name)
    resources = property(lambda self: self.spec.resources)
    run_options = property(lambda self: self.spec.run)

    @property
    def call(self) -> dict:
        if self.spec.function:
            return {"kind": "python", "target": self.spec.function}
        call = {"kind": "command", "argv": list(self.spec.command)}
        if self.task_folder:
            call["workdir"] = "task"
        return call

    @property
    def sys_path(self) -> list[str]:
        return [str((self.root / p).resolve()) for p in self.spec.path]

    @property
    def store(self) -> Store:
        """The experiment's store, for reading: one that does not exist is an error, never
        created (`run()` creates it)."""
        if self._store is None:
            if not (self.project / DIRNAME / "state.sqlite").exists():
                what = f" of {self.spec_file}" if self.spec_file else ""
                raise PushbuttonError(
                    f"experiment '{self.name}'{what} has not been run: there is no pushbutton "
                    f"store at {self.project / DIRNAME} (nor in a folder above); run it first "
                    f"with `pb run {self.spec_file or 'SPEC'}` or exp.run()")
            self._store = Store(self.project)
        return self._store

    def create_store(self) -> Store:
        """The store, created when this is the experiment's first run."""
        if self._store is None:
            self._store = Store(self.project)
        return self._store

    def _spec_data(self) -> dict:
        data = self.spec.model_dump()
        data.update(_spec_file=str(Path(self.spec_file).resolve()) if self.spec_file else None,
                    _root=str(self.root), _space=repr(self.space))
        return data

    def ensure_experiment(self) -> int:
        """The experiment's id; a new experiment gets its row, an existing one is not touched."""
        return self.create_store().experiment(self.name, self._spec_data(), update=False)

    def _exp_id(self, create=False) -> int:
        st = self.create_store() if create else self.store
        eid = st.experiment(self.name, self._spec_data() if create else None)
        if eid is None:
            raise PushbuttonError(f"experiment '{self.name}' has not been run in the store "
                                  f"{st.dir}; start it with `pb run`")
        if not create:
            self._check_same_spec(st, eid)
        return eid

    def _check_same_spec(self, st: Store, eid: int) -> None:
        """Results read through this spec are its own: an experiment of the same name recorded
        from another spec file that still exists is named in a warning, never passed off."""
        if self._checked_spec:
            return
        self._checked_spec = True
        other = self.recorded_elsewhere(st, eid)
        if other:
            import warnings
            warnings.warn(f"experiment '{self.name}' in the store {st.dir} was run from "
                          f"{other}, not from {Path(self.spec_file).resolve()}: what it "
                          "shows is that spec's. Give this spec another name, or run it in a "
                          "store of its own (`pb init` in its folder)", UserWarning,
                          stacklevel=4)

    def recorded_elsewhere(self, st: Store, eid: int) -> str | None:
        """The spec file the store recorded for this experiment's name, when that is another
        file than this one's and still exists (two specs sharing a name share the tasks)."""
        if not self.spec_file:
            return None
        row = st.db.execute("SELECT spec FROM experiments WHERE id=?", (eid,)).fetchone()
        try:
            recorded = json.loads(row[0]).get("_spec_file") if row else None
        except (ValueError, AttributeError):
            return None
        if recorded and Path(recorded) != Path(self.spec_file).resolve() and \
                Path(recorded).is_file():
            return recorded
        return None

    def __repr__(self):
        what = self.spec.function or " ".join(self.spec.command)
        return f"Experiment({self.name!r}, {what}, {self.space!r})"

    # -- running ---------------------------------------------------------------------------
    def register(self, yes: bool = False, progress=None) -> int:
        """Expand the space into task rows (idempotent); returns the experiment's id. Writes the
        spec and the schedule: `run()` calls it holding the experiment's lock. `progress(done,
        total)` is called along the way for a space of BIG_SPACE points or more."""
        eid, reg = self._registration(yes, progress)
        if reg is not None and not reg.first():
            tick = _ticker(reg, progress)
            reg.run_all(on_chunk=tick)
            if tick:
                tick()
        return eid

    def register_streaming(self, yes: bool = False, progress=None):
        """(experiment id, the registration of the rest or None): the first chunk of the space
        is registered now; the rest, if any, is for the caller to stream (`reg.stream()`)
        while the run starts (store/registration.py). A space the store holds as it is now
        is not registered again; a changed space of an experiment with tasks is registered
        in full here (one transaction)."""
        eid, reg = self._registration(yes, progress)
        if reg is None or reg.first():
            return eid, None
        return eid, reg

    def _registration(self, yes, progress):
        from pushbutton.store.registration import Registration, state
        self.space.check_size(limit=self.run_options.max_tasks, confirm=yes)
        eid = self._exp_id(create=True)
        st = self.store
        key = self.space_hash
        stored = st.space_key(eid)
        going = state(st.db, eid)
        if going is None and key and stored and stored.split(":")[0] == key:
            return eid, None  # same space as last time: 10^6 tasks need no re-hashing
        if going is not None and key and going[0] == key:
            return eid, Registration(st, eid, self.space, key, going[1] or 0, self.spec_file)
        if st.db.execute("SELECT 1 FROM tasks WHERE exp=? LIMIT 1", (eid,)).fetchone() is None:
            return eid, Registration(st, eid, self.space, key, 0, self.spec_file)
        self._register_full(st, eid, progress)
        return eid, None

    def _register_full(self, st, eid, progress) -> None:
        """A changed space of an experiment that has tasks: one transaction (tasks of the
        earlier space leave the schedule, those of both keep their state)."""
        canon = ids.canonical
        tid = ids.id_of_canonical
        total = None if self.space._pending() else len(self.space)
        if total is not None and total < BIG_SPACE:
            progress = None

        def rows():
            n = 0
            for i, p in enumerate(self.space):
                if progress is not None and i % 20000 == 0:
                    progress(i, total)
                try:
                    c = canon(p)
                except (TypeError, ValueError) as e:
                    raise SpecError(f"parameter point {i} cannot be written as JSON: {e}",
                                    file=self.spec_file, key="space",
                                    fix="use numbers, strings, bools or lists of them") from None
                n += 1
                yield tid(c), i, c
            counted.append(n)
        counted = []
        st.register_space(eid, rows(), None)
        if self.space_hash:
            st.db.execute("UPDATE experiments SET space_key=? WHERE id=?",
                          (f"{self.space_hash}:{counted[0]}", eid))
        if progress is not None:
            progress(counted[0], counted[0])

    def run(self, on: str | None = None, *, workers: int | None = None, rerun: bool = False,
            rerun_failed: bool = False, message: str | None = None, yes: bool = False,
            progress=None, detach: bool = False, sbatch: str | None = None,
            wait: bool = False, quiet: bool = False, registering=None) -> dict:
        """Run every task not yet done; returns a summary (and says it on stderr unless quiet:
        counts, the top causes of failures with one task id each). Resumes by default. On a
        SLURM target it returns once the tasks are submitted, or with wait once every one is
        over. `progress(done, total, failed, elapsed)` is called as tasks end (first with what
        earlier runs did, elapsed 0); `registering(done, total)` while a big space is
        registered (default: a line on stderr unless quiet)."""
        if os.environ.get("PB_WORKER"):
            raise PushbuttonError(
                "Experiment.run() was called while a worker imported your module to run a task; "
                "put the run under `if __name__ == \"__main__\":` so that importing the module "
                "only defines the function")
        from pushbutton.execution import operations as running
        summary = running.run(self, on=on or self.run_options.target, workers=workers,
                              rerun=rerun, rerun_failed=rerun_failed, message=message, yes=yes,
                              progress=progress, sbatch=sbatch, wait=wait,
                              registering=registering or (None if quiet else _SayRegistering()))
        if not quiet and "failures" in summary:
            from pushbutton.execution.summary import run_lines
            lines = run_lines(self.name, summary.get("counts"), summary.get("seconds"),
                              summary["failures"], self.resources)
            if summary["failures"].get("failed"):
                lines.append("a task's log: exp.logs(ID), or `pb logs ID` in a terminal")
            print("\n".join(lines), file=sys.stderr)
        return summary

    # -- looking at it ---------------------------------------------------------------------
    def status(self) -> dict:
        from pushbutton.execution import operations as running
        return running.status(self.store, self._exp_id(), self.name)

    def results(self, where: str | None = None, all_tasks: bool = True, run: int | None = None):
        """pandas DataFrame: one row per task, pb_task_id + parameters + metrics + pb_status ...
        `where` is one SQL expression over those columns; `run=N`: the rows run N produced
        (results that a later --rerun replaced stay readable there)."""
        from pushbutton.store import views as table
        return table.results(self.store, self._exp_id(), self.name, where=where,
                             all_tasks=all_tasks, run=run)

    def series(self):
        from pushbutton.store import views as table
        return table.series(self.store, self._exp_id(), self.name)

    def sql(self, query: str):
        from pushbutton.store import views as table
        return table.sql(self.store, query, experiment=self.name)

    def gather(self, file: str, header: bool | None = None):
        """`pb gather FILE`: FILE from every done task's folder as one DataFrame (pb_task_id,
        the parameters, the file's columns, pb_row), kept in the store (the `pb sql` view named
        after the file). attrs["problems"]: [(task id, parameters, why)] of done tasks whose
        file is missing or unreadable."""
        from pushbutton.harvest.gather import gather
        g = gather(self.store, self._exp_id(), self.name, file, header=header)
        df = g.frame
        df.attrs["problems"] = g.problems
        return df

    def cancel(self) -> dict:
        from pushbutton.execution import operations as running
        return running.cancel(self.store, self._exp_id(), self.name)

    def logs(self, task: str) -> dict:
        from pushbutton.execution import operations as running
        return running.logs(self.store, self._exp_id(), task)

    def retry(self, **kw) -> dict:
        """Run the failed tasks again (with a fresh retry budget; attempt numbers run on)."""
        return self.run(rerun_failed=True, **kw)

    def show(self) -> dict:
        """The stored spec and the provenance of every run."""
        eid = self._exp_id()
        spec = next(e["spec"] for e in self.store.experiments() if e["id"] == eid)
        return {"spec": spec, "runs": self.store.runs(eid)}

    def clean(self, bundles_only: bool = False) -> int:
        """Delete this experiment's tasks, results and logs (or only finished bundle folders)."""
        from pushbutton.execution import operations as running
        return running.clean(self.store, self._exp_id(), self.name, bundles_only)

    def history(self) -> list[dict]:
        return self.store.runs(self._exp_id())

    def aggregate(self, by=None, metrics=None, **kw):
        from pushbutton.analysis import stats as analysis
        return analysis.aggregate(self.results(all_tasks=False), by=by or self._by(),
                                  metrics=metrics, **kw)

    def success_rate(self, by=None, success="success", **kw):
        """Success rate per parameter point with Wilson intervals."""
        from pushbutton.analysis import stats as analysis
        return analysis.success_rate(self.results(), by=by or self._by(), success=success, **kw)

    def boundary(self, x: str, y: str, rate: str = "success", level: float = 0.5, **kw):
        """Where the rate crosses `level` over the (x, y) grid, interpolated, per x."""
        from pushbutton.analysis import stats as analysis
        return analysis.boundary(self.results(), x=x, y=y, rate=rate, level=level, **kw)

    def _by(self):
        return [n for n in self.space.names if n not in ("rep", "seed")]

    def plot(self, kind: str = "line", **kw):
        """A figure of this experiment (line, heatmap, histogram, learning_curves)."""
        from pushbutton.analysis import figures
        if kind == "learning_curves":
            return figures.learning_curves(self.series(), **kw)
        kw.setdefault("units", self.spec.units)
        return getattr(figures, kind)(self.results(all_tasks=False), **kw)

    def figure_warnings(self) -> list[str]:
        """Warnings for figure declarations naming a column that looks like a typo of a
        parameter or of a metric this experiment has stored so far (other unknown names may be
        metrics not returned yet: the report checks them). Reads only a store that exists."""
        known = list(self.space.names) + ["rep", "seed"]
        if self._store is not None or (self.project / DIRNAME / "state.sqlite").exists():
            import pyarrow.parquet as pq

            from pushbutton.store import parts as R
            try:
                folder = self.project / DIRNAME  # read as files: no connection, no write
                known += R.columns_meta(folder / "results" / self.name)["metrics"]
                for part in R.parts(folder / "series" / self.name):
                    known += pq.read_schema(part).names
            except Exception:  # noqa: BLE001 - a hint only; the report checks for certain
                pass
        from pushbutton.spec.figure_keys import unknown_columns
        return unknown_columns(self.spec.figures, known, self.spec_file)

    def report(self, outdir=None, open_browser: bool = False):
        from pushbutton.report import html as report
        return report.build_for_experiment(self, outdir, open_browser=open_browser)


def load(path: str | os.PathLike, project=None) -> Experiment:
    """An experiment from a TOML spec; tasks run in the spec's folder."""
    path = Path(path)
    return from_dict(specmod.read_toml(path), file=str(path), root=path.resolve().parent,
                     project=project)


def from_dict(data: dict, file: str | None = None, root=None, project=None) -> Experiment:
    """An experiment from the TOML form as a dict (errors name `file`)."""
    from pushbutton.spec.space import Space
    path = Path(file or "experiment.toml")
    spec = specmod.validate(data, file=file)
    space = Space.from_dict(spec.space, file=str(path), key="space")
    r, o = spec.resources, spec.run
    return Experiment(spec.name, function=spec.function, command=spec.command, space=space,
                      description=spec.description, timeout=r.timeout, retries=r.retries,
                      retry_on=r.retry_on, cpus=r.cpus, memory=r.memory, gpus=r.gpus,
                      workers=o.workers, bundle_size=o.bundle_size, units=spec.units,
                      figures=spec.figures, metrics=spec.metrics,
                      root=root or path.resolve().parent, project=project, path=spec.path,
                      target=o.target, sbatch=o.sbatch, spec_file=file, space_dict=spec.space,
                      max_tasks=o.max_tasks)
