"""Arrow arrays built from buffers (core/arrays.py) hold what pyarrow's own conversion gives."""
import pyarrow as pa
import pytest

from pushbutton.core.arrays import ints, strings


@pytest.mark.parametrize("values", [
    ["%020x" % k for k in range(1000)],  # task ids: one width (offsets without a running sum)
    ["a", "bcd", "", "ef"], ["", ""], [], ["x"], ["é", "x"], [None, "x", None], ["", None]])
def test_strings_equal_pyarrows_conversion(values):
    got = strings(values)
    got.validate(full=True)
    assert got.equals(pa.array(values, pa.string()))


def test_strings_refuse_what_is_not_text():
    with pytest.raises(pa.ArrowTypeError):
        strings(["a", 1])


def test_ints_equal_pyarrows_conversion():
    values = [0, None, -5, 2**62]
    assert ints(values).equals(pa.array(values, pa.int64()))
