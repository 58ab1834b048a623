"""Property-based: malformed specs always give a located SpecError, never a traceback."""
import copy

from hypothesis import HealthCheck, given, settings, strategies as st

from pushbutton.core.errors import PushbuttonError
from pushbutton.experiment import from_dict

VALID = {"name": "ok", "function": "tasks:square",
         "space": {"grid": {"x": [1, 2, 3]}, "reps": 2},
         "resources": {"timeout": "10s", "retries": 1, "memory": "1GB"},
         "run": {"workers": 2}}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**7), st.floats(allow_nan=True),
                    st.text(max_size=8))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), c,
                                                                   max_size=3)), max_leaves=6)
PATHS = [(), ("space",), ("space", "grid"), ("resources",), ("run",)]


@st.composite
def mutated(draw):
    spec = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = spec
        for p in path:
            node = node.setdefault(p, {}) if isinstance(node, dict) else node
        if not isinstance(node, dict):
            continue
        action = draw(st.sampled_from(["set", "delete", "unknown"]))
        keys = list(node)
        if action == "delete" and keys:
            del node[draw(st.sampled_from(keys))]
        elif action == "set" and keys:
            node[draw(st.sampled_from(keys))] = draw(values)
        else:
            node[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return spec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_malformed_specs_raise_located_errors(tmp_path_factory, spec):
    try:
        exp = from_dict(spec, file="exp.toml", root=".", project=tmp_path_factory.getbasetemp())
    except PushbuttonError as e:
        assert "exp.toml" in str(e), str(e)
        return
    # what validated must be usable: a space with a length and points
    assert len(exp.space) >= 1
    exp.space.head(2)


def test_valid_spec_loads(tmp_path):
    exp = from_dict(VALID, file="exp.toml", root=".", project=tmp_path)
    assert len(exp.space) == 6 and exp.resources.memory == 1024
