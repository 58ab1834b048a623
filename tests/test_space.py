"""The lazy parameter-space algebra: order, laziness, seeds, TOML form, and clear errors."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushbutton.core.errors import SpecError
from pushbutton.core.ids import derive_seed
from pushbutton.spec.space import Space, choice, grid, loguniform, normal, randint, reps, sample, uniform, where, zip

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- order and length ---------------------------------------------------------------------------
def test_grid_last_axis_fastest():
    g = grid(a=[1, 2], b=["x", "y", "z"])
    assert len(g) == 6 and g.names == ("a", "b")
    assert list(g) == [{"a": a, "b": b} for a in [1, 2] for b in "xyz"]
    assert g[0] == {"a": 1, "b": "x"} and g[-1] == {"a": 2, "b": "z"} and g[4] == {"a": 2, "b": "y"}
    with pytest.raises(IndexError):
        g[6]
    with pytest.raises(IndexError):
        g[-7]
    assert g[1:3] == list(g)[1:3]


def test_grid_accepts_dict_range_numpy_scalar():
    g = grid({"n": range(3)}, x=np.array([0.5, 1.5]), k=np.int64(7), s="const")
    pts = list(g)
    assert len(pts) == 6 and pts[0] == {"n": 0, "x": 0.5, "k": 7, "s": "const"}
    assert type(pts[0]["x"]) is float and type(pts[0]["k"]) is int
    json.dumps(pts)   # JSON-able


def test_zip_and_product_and_concat():
    z = zip(a=[1, 2], b=["x", "y"])
    assert list(z) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    p = grid(n=[10, 20]) * z
    assert len(p) == 4 and p.names == ("n", "a", "b")
    assert list(p) == [{"n": n, **q} for n in [10, 20] for q in z]
    c = grid(a=[1, 2]) + grid(c=[5])
    assert len(c) == 3 and c.names == ("a", "c")
    assert list(c) == [{"a": 1}, {"a": 2}, {"c": 5}]   # a point has only its own keys
    assert c[2] == {"c": 5} and c[-3] == {"a": 1}
    assert list(sum([grid(a=[1]), grid(a=[2]), grid(a=[3])])) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_product_overlap_and_bad_zip():
    with pytest.raises(SpecError, match="'a'"):
        grid(a=[1]) * grid(a=[2])
    with pytest.raises(SpecError, match=r"a=2, b=3"):
        zip(a=[1, 2], b=[1, 2, 3])


def test_repr_and_describe():
    s = grid(n=[1, 2, 3], delta={"linspace": [0, 1, 10]}) * reps(5)
    assert repr(s) == "grid(n=3, delta=10) * reps(5)  [150 points]"
    assert s.describe() == {"kind": "product", "size": 150, "names": ["n", "delta", "rep", "seed"]}
    assert "where" in repr(grid(a=range(10**7)).where("a < 3"))   # no evaluation just to print


# --- s[i] == list(s)[i] across compositions -----------------------------------------------------
def _leaf(draw, prefix):
    kind = draw(st.sampled_from(["grid", "zip", "sample", "reps"]))
    if kind == "grid":
        k = draw(st.integers(1, 3))
        return grid(**{f"{prefix}{j}": list(range(draw(st.integers(1, 3)))) for j in range(k)})
    if kind == "zip":
        n = draw(st.integers(1, 4))
        return zip(**{f"{prefix}z": list(range(n)), f"{prefix}w": [str(i) for i in range(n)]})
    if kind == "sample":
        return sample(draw(st.integers(1, 4)), seed=draw(st.integers(0, 5)),
                      **{f"{prefix}u": uniform(0, 1), f"{prefix}c": choice([1, 2])})
    return reps(draw(st.integers(1, 3)))


@st.composite
def spaces(draw, depth=0, prefix="p"):
    if depth >= 2 or draw(st.booleans()):
        s = _leaf(draw, prefix)
    else:
        op = draw(st.sampled_from(["*", "+", "where"]))
        a = draw(spaces(depth + 1, prefix + "a"))
        if op == "where":
            s = a.where(lambda p: hash(json.dumps(p, sort_keys=True)) % 3 != 0)
        else:
            b = draw(spaces(depth + 1, prefix + "b"))
            if op == "*" and ({"rep", "seed"} & set(a.names) & set(b.names)):
                b = grid(**{prefix + "g": [0, 1]})
            s = a * b if op == "*" else a + b
    return s


@FAST
@given(spaces(), st.data())
def test_index_matches_iteration(s, data):
    pts = list(s)
    assert len(pts) == len(s) == s.size
    if pts:
        i = data.draw(st.integers(-len(pts), len(pts) - 1))
        assert s[i] == pts[i]
        assert s.head(3) == pts[:3]


# --- reps ---------------------------------------------------------------------------------------
def test_reps_three_forms_agree():
    g = grid(n=[1, 2], x=["a", "b"])
    a, b, c = list(g.reps(3)), list(reps(3, g)), list(g * reps(3))
    assert a == b == c and len(a) == 12
    assert [p["rep"] for p in a[:3]] == [0, 1, 2]
    for p in a:
        assert p["seed"] == derive_seed({"n": p["n"], "x": p["x"]}, p["rep"])
    assert len({p["seed"] for p in a}) == 12            # different for different reps and points
    assert list(g.reps(3)) == a                          # deterministic
    # reps first: rep varies slowest, seeds still from the whole point
    d = list(reps(3) * g)
    assert sorted(d, key=lambda p: p["seed"]) == sorted(a, key=lambda p: p["seed"])
    # a product around a reps factor derives seeds from the full point
    e = (g * reps(2)) * grid(m=[7])
    assert all(p["seed"] == derive_seed({"n": p["n"], "x": p["x"], "m": 7}, p["rep"]) for p in e)
    assert list(reps(2)) == [{"rep": r, "seed": derive_seed({}, r)} for r in range(2)]


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "3", None])
def test_reps_bad(n):
    with pytest.raises(SpecError, match="reps"):
        reps(n)
    with pytest.raises(SpecError):
        grid(a=[1]).reps(3).reps(2)   # rep/seed twice


# --- sample -------------------------------------------------------------------------------------
def test_sample_deterministic_and_in_range():
    s = sample(500, seed=3, u=uniform(-1, 2), l=loguniform(1e-4, 1e-1), k=randint(1, 6),
               z=normal(10, 2), c=choice(["a", "b", "c"]), const=7)
    pts = list(s)
    assert pts == list(sample(500, seed=3, u=uniform(-1, 2), l=loguniform(1e-4, 1e-1),
                              k=randint(1, 6), z=normal(10, 2), c=choice(["a", "b", "c"]), const=7))
    assert s[123] == pts[123] and s[-1] == pts[-1]
    assert all(-1 <= p["u"] < 2 and 1e-4 <= p["l"] <= 1e-1 and 1 <= p["k"] <= 6 for p in pts)
    assert {p["k"] for p in pts} == set(range(1, 7)) and {p["c"] for p in pts} == {"a", "b", "c"}
    assert all(p["const"] == 7 for p in pts)
    assert abs(sum(p["z"] for p in pts) / 500 - 10) < 0.5
    assert pts != list(sample(500, seed=4, u=uniform(-1, 2), l=loguniform(1e-4, 1e-1),
                              k=randint(1, 6), z=normal(10, 2), c=choice(["a", "b", "c"]), const=7))
    # adding a parameter does not change the others' draws
    assert [p["u"] for p in sample(50, seed=3, u=uniform(-1, 2))] == [p["u"] for p in pts[:50]]
    # a 10^12-point sample answers at once
    assert sample(10**12, x=uniform(0, 1))[10**12 - 1]["x"] < 1


@pytest.mark.parametrize("bad", [lambda: uniform(2, 1), lambda: loguniform(0, 1),
                                 lambda: randint(1.5, 3), lambda: normal(0, -1),
                                 lambda: choice([]), lambda: uniform(0, float("nan")),
                                 lambda: sample(0, x=uniform(0, 1)), lambda: sample(3),
                                 lambda: sample(3, x=[1, 2]), lambda: sample(3, seed="a", x=1)])
def test_sample_bad(bad):
    with pytest.raises(SpecError):
        bad()


# --- where --------------------------------------------------------------------------------------
def test_where_string_and_callable():
    g = grid(n=[100, 200], delta=[0.1, 0.5, 0.9])
    w = g.where("delta <= 0.5 or n > 100")
    expect = [p for p in g if p["delta"] <= 0.5 or p["n"] > 100]
    assert list(w) == expect and len(w) == 5 and w[-1] == expect[-1] and w[0] == expect[0]
    assert list(where(g, lambda p: p["n"] == 100)) == [p for p in g if p["n"] == 100]
    assert list(g.where("abs(delta - 0.5) < 0.01 and n in (100, 300)")) == [g[1]]
    assert len(g.where("max(n, 150) ** 2 > 30000 and not delta == 0.1")) == 2
    # concatenation: a point lacking a name reads None there
    c = (grid(a=[1, 2]) + grid(b=[3])).where("a == 2 or b == 3")
    assert list(c) == [{"a": 2}, {"b": 3}]
    assert len((grid(a=[1]) * reps(4)).where("rep % 2 == 0")) == 2


@pytest.mark.parametrize("expr", ["__import__('os')", "n.__class__", "(lambda: 1)()", "n[0]",
                                  "open('x')", "m > 1", "n >", "", "[x for x in n]",
                                  "n if n else 1",
                                  "f'{n}'", "n := 3", "abs(n, key=1)", "2 ** 10 ** 10 > n"])
def test_where_refuses(expr):
    with pytest.raises(SpecError, match="where"):
        w = grid(n=[1, 2]).where(expr)
        len(w)   # the huge exponent is refused when it runs


def test_where_runtime_error_is_spec_error():
    with pytest.raises(SpecError, match="failed on point"):
        len(grid(n=[1, "x"]).where("n > 0"))
    with pytest.raises(SpecError):
        grid(n=[1]).where(42)


# --- linspace / logspace / range ----------------------------------------------------------------
def test_axis_forms():
    assert [p["x"] for p in grid(x={"linspace": [0.05, 0.95, 10]})] == \
        [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95]
    assert [p["x"] for p in grid(x={"linspace": [0, 1, 11]})][1] == 0.1
    assert [p["x"] for p in grid(x={"linspace": [3, 4, 1]})] == [3.0]
    assert [p["lr"] for p in grid(lr={"logspace": [-4, -1, 4]})] == [1e-4, 1e-3, 1e-2, 1e-1]
    assert [p["k"] for p in grid(k={"range": [1, 10, 2]})] == [1, 3, 5, 7, 9]
    assert [p["k"] for p in grid(k={"range": [3]})] == [0, 1, 2]


# --- from_dict ----------------------------------------------------------------------------------
def test_from_dict_full_form():
    d = {"grid": {"n": [100, 200], "delta": {"linspace": [0.05, 0.95, 10]},
                  "k": {"range": [1, 10, 2]}, "lr": {"logspace": [-4, -1, 4]}},
         "zip": {"a": [1, 2], "b": ["x", "y"]},
         "sample": {"n": 3, "seed": 1, "x": {"uniform": [0, 1]}, "c": {"choice": ["a", "b"]}},
         "reps": 2, "where": "delta <= 0.5 or n > 100"}
    s = Space.from_dict(d, file="exp.toml")
    base = grid(n=[100, 200], delta={"linspace": [0.05, 0.95, 10]}, k={"range": [1, 10, 2]},
                lr={"logspace": [-4, -1, 4]}) * zip(a=[1, 2], b=["x", "y"]) * sample(
                    3, seed=1, x=uniform(0, 1), c=choice(["a", "b"]))
    expect = list(base.where("delta <= 0.5 or n > 100").reps(2))
    assert list(s) == expect and len(s) == len(expect) == 2 * 3 * 2 * 20 * 15
    assert s.names == ("n", "delta", "k", "lr", "a", "b", "x", "c", "rep", "seed")


def test_from_dict_union_and_scalar_and_reps_only():
    d = {"union": [{"grid": {"m": ["a", "b"]}}, {"zip": {"m": ["c"], "q": [1]}}], "grid": {"s": 0},
         "reps": 2}
    s = Space.from_dict(d)
    assert [(p["s"], p["m"], p["rep"]) for p in s] == [
        (0, m, r) for m in "abc" for r in range(2)]
    assert list(Space.from_dict({"reps": 3})) == list(reps(3))


malformed = st.sampled_from([
    ({"grd": {"n": [1]}}, "space.grd"),
    ({"grid": {"n": []}}, "space.grid.n"),
    ({"grid": {}}, "space.grid"),
    ({"grid": [1, 2]}, "space.grid"),
    ({"grid": {"n": {"lnspace": [0, 1, 3]}}}, "space.grid.n"),
    ({"grid": {"n": {"linspace": [0, 1]}}}, "space.grid.n.linspace"),
    ({"grid": {"n": {"range": [0, 1.5]}}}, "space.grid.n.range"),
    ({"grid": {"n": {"range": [5, 1]}}}, "space.grid.n.range"),
    ({"grid": {"n": {"uniform": [0, 1]}}}, "space.grid.n"),
    ({"grid": {"n": float("nan")}}, "space.grid.n"),
    ({"grid": {"1n": [1]}}, "space.grid.1n"),
    ({"zip": {"a": [1, 2], "b": [1]}}, "space.zip"),
    ({"sample": {"x": {"uniform": [0, 1]}}}, "space.sample.n"),
    ({"sample": {"n": 0, "x": {"uniform": [0, 1]}}}, "space.sample.n"),
    ({"sample": {"n": 5, "x": {"unifrom": [0, 1]}}}, "space.sample.x"),
    ({"sample": {"n": 5, "x": {"uniform": [1, 0]}}}, "space.sample.x.uniform"),
    ({"sample": {"n": 5, "seed": 1.5, "x": 1}}, "space.sample.seed"),
    ({"grid": {"n": [1]}, "reps": 0}, "space.reps"),
    ({"grid": {"n": [1]}, "reps": "5"}, "space.reps"),
    ({"grid": {"n": [1]}, "where": "n >"}, "space.where"),
    ({"grid": {"n": [1]}, "where": "nn > 1"}, "space.where"),
    ({"grid": {"n": [1]}, "where": "import os"}, "space.where"),
    ({"grid": {"n": [1]}, "where": 3}, "space.where"),
    ({"grid": {"n": [1]}, "zip": {"n": [2]}}, "space"),
    ({"union": []}, "space.union"),
    ({"union": [{"grid": {"n": []}}]}, "space.union[0].grid.n"),
    ({"union": [{"grid": {"n": [1]}}, {"grad": {}}]}, "space.union[1].grad"),
    ({}, "space"),
    ([1, 2], "space"),
])


@FAST
@given(malformed)
def test_malformed_dicts_raise_spec_error_naming_key(case):
    d, key = case
    with pytest.raises(SpecError) as e:
        Space.from_dict(d, file="exp.toml")
    assert e.value.key == key and f"'{key}'" in str(e.value) and "exp.toml" in str(e.value)
    assert e.value.fix


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["n", "x", "seed", "range", "linspace", "logspace", "uniform", "choice",
                         "randint", "a b", "grid", "zip"]), inner, max_size=3),
    max_leaves=8)
space_dicts = st.dictionaries(
    st.sampled_from(["grid", "zip", "sample", "reps", "where", "union", "grd", "rep"]),
    json_values | st.sampled_from(["n > 1", "x <", "a + 1 == 2", "__import__('os')"]), max_size=4)


@settings(max_examples=300, deadline=None)
@given(space_dicts)
def test_random_dicts_never_traceback(d):
    try:
        s = Space.from_dict(d, file="exp.toml")
    except SpecError as e:
        assert str(e).startswith("exp.toml: key 'space")
        return
    try:   # whatever was built behaves: only SpecError can come out
        s.check_size(limit=10_000)
        s.head(3)
        repr(s)
    except SpecError:
        pass


# --- size guard and laziness --------------------------------------------------------------------
def test_size_guard():
    s = grid(a=range(1000), b=range(1001))
    with pytest.raises(SpecError, match="more than 1000000") as e:
        s.check_size()
    assert "confirm=True" in e.value.fix
    assert s.check_size(confirm=True) == 1_001_000
    assert grid(a=range(10)).check_size(limit=10) == 10
    with pytest.raises(SpecError, match="empty"):
        grid(a=[1, 2]).where("a > 5").check_size()
    t = Space.from_dict({"grid": {"a": {"range": [10**7]}}}, file="big.toml")
    with pytest.raises(SpecError, match="big.toml"):
        t.check_size()
    # a filter far over the limit is refused on its bound, without running it
    with pytest.raises(SpecError, match="before where filtering"):
        grid(a=range(10**9)).where(lambda p: 1 / 0).check_size()


def test_huge_space_is_lazy():
    g = grid(a=range(10**3), b=range(10**3), c=range(10**3)) * reps(5)   # 5e9 points
    assert len(g) == 5 * 10**9 and g.size == 5 * 10**9
    last = g[-1]
    assert last["a"] == last["b"] == last["c"] == 999 and last["rep"] == 4
    m = grid(a=range(100), b=range(100), c=range(100))
    assert len(m) == 10**6 and m[999_999] == {"a": 99, "b": 99, "c": 99}
    assert g.head(2)[1]["rep"] == 1
    lin = grid(x={"linspace": [0, 1, 10**9 + 1]})
    assert lin[10**8]["x"] == 0.1
    c = (g + m) * grid(z=[0, 1])
    assert c[-1] == {"a": 99, "b": 99, "c": 99, "z": 1}
    assert repr(grid(a=range(10**10)).where("a < 5")).endswith("[<= 10,000,000,000 points]")


def test_where_is_cached_and_lazy():
    calls = []
    w = grid(a=range(1000)).where(lambda p: calls.append(1) or p["a"] % 7 == 0)
    assert len(w) == 143 and len(calls) == 1000
    assert w[5] == {"a": 35} and len(w) == 143 and len(calls) == 1000
