"""plain_json: the one conversion of results to strict JSON."""

import json
import math

import numpy as np
import pytest

from specrl_sglang.plain_json import dumps, plain


def test_non_finite_floats_become_null_everywhere_and_numpy_becomes_plain():
    value = {"kv": math.nan, 1: (np.float32(0.5), np.int64(3)), "arr": np.array([1.0, np.inf]), "ok": 2.5}
    out = plain(value)
    assert out == {"kv": None, "1": [0.5, 3], "arr": [1.0, None], "ok": 2.5}
    assert type(out["1"][1]) is int
    assert json.loads(dumps(value)) == out
    assert "NaN" not in dumps({"x": [float("-inf"), float("nan")]})


def test_the_input_is_not_mutated_and_objects_json_cannot_hold_are_refused():
    value = {"a": [math.nan]}
    plain(value)
    assert math.isnan(value["a"][0])
    with pytest.raises(TypeError):
        dumps({"a": object()})


def test_compact_and_indented_forms():
    assert dumps({"a": [1, 2]}, compact=True) == '{"a":[1,2]}'
    assert dumps({"a": 1}, indent=2) == '{\n  "a": 1\n}'
