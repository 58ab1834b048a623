"""bundle.json's fields before its task list, read without parsing the list (store/bundlelogs.head):
the same as the whole parse less "tasks" for both writers' layouts, and None (the caller parses
it all) wherever a cut could be wrong."""
import json

from pushbutton.store.bundlelogs import head

SPEC = {"bundle": "e1-r1-000001", "experiment": "x", "run": 1, "root": "/p/a \"q\", \"tasks\": [",
        "sys_path": ["/p"], "call": {"function": "m:f"}, "timeout": None, "memory_mb": None,
        "task_root": "/p/.pushbutton/tasks"}
TASKS = [{"id": "a" * 20, "params": {"b": 1, "tasks": [1, 2]}, "attempt": 1}]


def test_both_writers_layouts():
    # the driver splices the compact task list in after json.dumps of the rest
    driver = json.dumps(SPEC)[:-1] + ', "tasks": [' + ",".join(
        json.dumps(t, separators=(",", ":")) for t in TASKS) + "]}"
    slurm = json.dumps(dict(SPEC, tasks=TASKS))  # the SLURM submission: one json.dumps
    for text in (driver, slurm):
        full = json.loads(text)
        full.pop("tasks")
        assert head(text) == full


def test_other_layouts_are_left_to_the_whole_parse():
    assert head(json.dumps(dict(tasks=TASKS, **SPEC))) is None  # tasks not last
    assert head(json.dumps(dict(SPEC, call={"x": 1, "tasks": [1]}))) is None  # no task list
    nested = json.dumps(dict(SPEC, call={"x": 1, "tasks": [1]}, tasks=TASKS))
    got = head(nested)  # the first cut is inside "call": not JSON; never a wrong header
    assert got is None or got == {k: v for k, v in json.loads(nested).items() if k != "tasks"}
    assert head("[1, 2]") is None and head("") is None
