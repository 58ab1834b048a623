"""`pb parrun script.R` and `pb parrun script.m`: the leading for-loops of an R or Octave script
are the grid, each point runs in its own task folder, files come back with `pb gather`.

Needs Rscript and octave-cli (scripts/setup.d/50-r-octave.sh installs them); without them the
tests that run them skip, unless CI=true (then they fail)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pushbutton.core.errors import SpecError
from pushbutton.spec import parrun_lang as PL


def _need(prog):
    found = shutil.which(prog)
    if not found and os.environ.get("CI") == "true":
        return pytest.mark.usefixtures()    # run, and fail: CI must have it
    return pytest.mark.skipif(not found, reason=f"{prog} not installed "
                              "(scripts/setup.d/50-r-octave.sh)")


needs_r = _need("Rscript")
needs_octave = _need("octave-cli")


def pb(cwd, *args, check=False, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def write(d, name, text):
    p = d / name
    p.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return p


def table(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


R_SWEEP = """
    # in the style of ClusterJob's examples: arrays defined above, loops over their indices
    Var0 <- c(0.5, 1.5, 2.5)
    Var1 <- seq(10, 20, by = 10)
    for (i in 1:length(Var0)) {
      for (j in seq_along(Var1)) {
        Sys.sleep(as.numeric(Sys.getenv("SLOW", "0")))
        cat(sprintf("%d,%d,%d\\n", i, j, i + j), file = "results.csv", append = TRUE)
        cat(sprintf('{"v": %g}\\n', Var0[i] * Var1[j]))
      }
    }
"""

M_SWEEP = """
    1;
    x = [1 2 3];
    ys = linspace(0, 1, 3);
    for i = 1:numel(x)
      for j = 1:numel(ys)
        s = str2double(getenv('SLOW')); if ~isnan(s), pause(s); end
        fid = fopen('results.csv', 'a');
        fprintf(fid, '%d,%d,%d\\n', i, j, i + j);
        fclose(fid);
        printf('{"y": %g}\\n', ys(j));
      end
    end
"""


def _gathered(d, exp, n):
    r = pb(d, "gather", "results.csv", exp, "--format", "csv")
    got = table(r)
    assert len(got) == n, r.stdout + r.stderr
    for x in got:   # one row per point: the parameters, then the file's columns
        assert (int(x["col1"]), int(x["col2"])) == (int(x["i"]), int(x["j"]))
        assert int(x["col3"]) == int(x["i"]) + int(x["j"])
    assert len({(x["i"], x["j"]) for x in got}) == n
    return got


@needs_r
@pytest.mark.slow
def test_r_script_sweeps_gathers_and_reruns_without_doubling(tmp_path):
    write(tmp_path, "sweep.R", R_SWEEP)
    dry = pb(tmp_path, "parrun", "sweep.R", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "parrun-sweep.R: 6 tasks" in dry.stdout and "found by running" in dry.stdout
    r = pb(tmp_path, "parrun", "sweep.R", "-j", "2", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 done, 0 failed" in r.stdout
    res = table(pb(tmp_path, "results", "parrun-sweep.R", "--format", "csv"))
    assert sorted(float(x["v"]) for x in res) == sorted(a * b for a in (0.5, 1.5, 2.5)
                                                       for b in (10, 20))
    _gathered(tmp_path, "parrun-sweep.R", 6)
    assert not (tmp_path / "results.csv").exists()   # tasks wrote in their own folders
    r = pb(tmp_path, "parrun", "sweep.R", "--rerun", "--quiet")
    assert "6 done" in r.stdout, r.stderr
    _gathered(tmp_path, "parrun-sweep.R", 6)


@needs_octave
@pytest.mark.slow
def test_octave_script_sweeps_and_gathers(tmp_path):
    write(tmp_path, "sweep.m", M_SWEEP)
    r = pb(tmp_path, "parrun", "sweep.m", "-j", "2", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "parrun-sweep.m: 9 done, 0 failed" in r.stdout
    res = table(pb(tmp_path, "results", "parrun-sweep.m", "--format", "csv"))
    assert sorted(float(x["y"]) for x in res) == [0, 0, 0, 0.5, 0.5, 0.5, 1, 1, 1]
    _gathered(tmp_path, "parrun-sweep.m", 9)
    r = pb(tmp_path, "parrun", "sweep.m", "--rerun", "--quiet")
    assert "9 done" in r.stdout, r.stderr
    _gathered(tmp_path, "parrun-sweep.m", 9)


def _kill_and_resume(tmp_path, script, exp, n):
    env = {"SLOW": "0.4"}
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "parrun", script, "-j", "2",
                          "--quiet"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=dict(os.environ, **env))
    tasks = tmp_path / ".pushbutton" / "tasks" / exp
    deadline = time.time() + 60
    while time.time() < deadline and len(list(tasks.glob("*/*/results.csv"))) < 2:
        time.sleep(0.05)
    during = pb(tmp_path, "gather", "results.csv", exp, "--format", "csv")   # while it runs
    assert during.returncode == 0 and "not done yet" in during.stderr, during.stderr
    assert len(table(during)) < n
    p.send_signal(signal.SIGKILL)      # the driver dies mid-sweep
    p.wait()
    r = pb(tmp_path, "parrun", script, "--quiet", env=env)
    assert r.returncode == 0 and f"{n} done" in r.stdout, r.stdout + r.stderr
    _gathered(tmp_path, exp, n)


@needs_r
@pytest.mark.slow
def test_r_kill_9_of_the_driver_and_resume_gathers_one_row_per_point(tmp_path):
    write(tmp_path, "sweep.R", R_SWEEP)
    _kill_and_resume(tmp_path, "sweep.R", "parrun-sweep.R", 6)


@needs_octave
@pytest.mark.slow
def test_octave_kill_9_of_the_driver_and_resume_gathers_one_row_per_point(tmp_path):
    write(tmp_path, "sweep.m", M_SWEEP)
    _kill_and_resume(tmp_path, "sweep.m", "parrun-sweep.m", 9)


@needs_r
@needs_octave
@pytest.mark.parametrize("name,text,line,what", [
    ("bad.R", "x <- c(1, 2)\ny <- undefined_fn(3)\nfor (i in seq_along(y)) {\n  print(i)\n}\n",
     2, 'could not find function "undefined_fn"'),
    ("bad.m", "x = [1 2];\ny = undefined_fn(3);\nfor i = 1:numel(y)\n  disp(i)\nend\n",
     2, "'undefined_fn' undefined"),
    ("hang.R", "x <- 1\nwhile (TRUE) { x <- x + 1 }\nfor (i in 1:x) print(i)\n",
     2, "did not finish within 2 s"),
    ("hang.m", "x = 1;\nwhile true, x = x + 1; end\nfor i = 1:x\n disp(i)\nend\n",
     2, "did not finish within 2 s"),
    ("vec.R", "L <- list(c(1, 2), 3)\nfor (v in L) print(v)\n", 2, "not one number"),
    ("mat.m", "M = [1 2; 3 4];\nfor c = M\n disp(c)\nend\n", 2, "walks its columns"),
])
def test_a_preamble_that_fails_or_hangs_is_a_located_error(tmp_path, name, text, line, what):
    (tmp_path / name).write_text(text)
    t0 = time.time()
    r = pb(tmp_path, "parrun", name, "--dry-run", env={"PB_PARRUN_EVAL_TIMEOUT": "2"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{name}:{line}:" in r.stderr and what in r.stderr
    assert "Traceback" not in r.stderr and time.time() - t0 < 30


@needs_r
@needs_octave
def test_an_error_in_the_body_names_the_scripts_line(tmp_path):
    write(tmp_path, "body.R", """
        f <- function(a) {
          stop("bad a ", a)
        }
        for (i in c(1, 2)) {
          if (i > 1) f(i)
          cat('{"ok": 1}\\n')
        }
    """)
    write(tmp_path, "body.m", """
        1;
        function r = g(a)
          error('bad a %d', a);
        end
        for i = [1 2]
          if i > 1, g(i); end
          printf('{"ok": 1}\\n');
        end
    """)
    for script, where in (("body.R", ["body.R:2", "body.R:5"]),
                          ("body.m", ["g at line 3", "body.m at line 6"])):
        r = pb(tmp_path, "parrun", script, "--quiet")
        assert r.returncode == 1 and "1 done, 1 failed" in r.stdout, r.stdout + r.stderr
        rows = table(pb(tmp_path, "results", f"parrun-{script}", "--format", "csv"))
        bad = next(x for x in rows if x["pb_status"] == "failed")
        lg = pb(tmp_path, "logs", bad["pb_task_id"], "-e", f"parrun-{script}")
        assert "bad a 2" in lg.stdout
        for w in where:
            assert w in lg.stdout, lg.stdout


@needs_r
def test_dependent_inner_loop_and_break_next(tmp_path):
    write(tmp_path, "tri.R", """
        n <- 3
        for (i in 1:n) {
          for (j in 1:i) {
            if (j == 2) next
            cat(sprintf('{"p": %d}\\n', i * 10 + j))
          }
        }
    """)
    dry = pb(tmp_path, "parrun", "tri.R", "--dry-run")
    assert "6 tasks" in dry.stdout and "not a full grid" in dry.stdout, dry.stderr
    r = pb(tmp_path, "parrun", "tri.R", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = table(pb(tmp_path, "results", "parrun-tri.R", "--format", "csv"))
    pts = sorted((int(x["i"]), int(x["j"])) for x in rows)
    assert pts == [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3)]
    assert sorted(x["p"] for x in rows if x["p"]) == ["11", "21", "31", "33"]


# -- reading the nest without an interpreter ---------------------------------------------------
def test_literal_forms_are_read_without_running(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")          # no Rscript, no octave: nothing may run
    for var in ("PB_RSCRIPT", "PB_OCTAVE", "PB_MATLAB"):   # set by the test setup
        monkeypatch.delenv(var, raising=False)
    p = write(tmp_path, "lit.R", """
        xs <- c("a", "b")
        L <- 3L
        for (s in xs) {
          for (k in 1:L) {
            for (f in c(0.5, 1)) print(paste(s, k, f))
          }
        }
    """)
    s = PL.parse(p)
    assert s.seconds is None and s.names == ["s", "k", "f"]
    assert [lp.values for lp in s.loops] == [["a", "b"], [1, 2, 3], [0.5, 1.0]]
    assert len(PL.space_of(s)) == 12
    p = write(tmp_path, "lit.m", """
        names = {'x', "y"};
        for (n = 1:2:5)
          for v = [0.1, -2 3]
            for c = names
              disp(c{1});
            end
          end
        end
    """)
    s = PL.parse(p)
    assert s.seconds is None
    assert [lp.values for lp in s.loops] == [[1, 3, 5], [0.1, -2, 3], ["x", "y"]]
    assert s.loops[2].wrap == "cell"
    p = write(tmp_path, "comp.R", "x <- c(1, 2)\nx <- rev(x)\nfor (i in x) print(i)\n")
    with pytest.raises(SpecError, match="not installed here"):
        PL.parse(p)      # not literal any more: the interpreter is needed


@pytest.mark.parametrize("name,text,line,what", [
    ("after.R", "for (i in 1:2) {\n  print(i)\n}\nprint('done')\n", 4, "after the loop nest"),
    ("after.m", "for i = 1:2\n  disp(i)\nend\ndisp(3)\n", 4, "after the loop nest"),
    ("none.R", "x <- 1\nprint(x)\n", None, "no top-level `for`"),
    ("same.m", "for i = 1:2\n for i = 1:3\n  disp(i)\n end\nend\n", 2, "already the variable"),
    ("dup.R", "for (i in c(1, 1)) print(i)\n", 1, "twice"),
    ("open.R", "for (i in 1:2) {\n  print(i)\n", 1, "never closed"),
])
def test_nest_rules(tmp_path, name, text, line, what):
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as e:
        PL.parse(tmp_path / name)
    assert what in str(e.value)
    if line:
        assert f"{name}:{line}" in str(e.value)


def test_runner_keeps_every_line_and_walks_one_value(tmp_path):
    from pushbutton.spec.parrun_lang_runner import runner_data
    p = write(tmp_path, "keep.m", """
        a = 'it''s % not a comment';
        for i = 1:3  % the grid
          for (s = {'p', 'q'})
            if i > 1, continue; end
          end
        end
    """)
    s = PL.parse(p)
    d = runner_data(s)
    text = d["segments"][0] + "2" + d["segments"][1] + "{'q'}" + d["segments"][2]
    assert text.splitlines()[1] == "for i = 2  % the grid"
    assert text.splitlines()[2] == "  for (s = {'q'})"
    assert len(text.splitlines()) == len(s.text.splitlines())
    assert json.loads(json.dumps(d)) == d


@needs_r
def test_a_file_of_the_scripts_folder_named_by_the_body_is_warned_and_never_gathered(tmp_path):
    (tmp_path / "results.csv").write_text("0,0,0\n")      # left over from a run by hand
    write(tmp_path, "two.R", """
        for (i in 1:2) {
          cat(sprintf("%d\\n", i), file = "results.csv", append = TRUE)
        }
    """)
    r = pb(tmp_path, "parrun", "two.R", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning:" in r.stderr and "`results.csv` exists in the script's folder" in r.stderr
    g = pb(tmp_path, "gather", "results.csv", "parrun-two.R", "--format", "csv")
    assert g.returncode == 1 and table_rows(g.stdout) == []
    assert g.stderr.count("is a link to") == 2 and "not a file of its own" in g.stderr


def table_rows(text):
    return list(csv.DictReader(io.StringIO(text)))
