"""The one mean / standard-error estimator the reports use."""

import math

import numpy as np
import pytest

from specrl_sglang.mean_se import MeanSE, mean_se


def test_mean_and_standard_error_of_a_sample():
    got = mean_se([1.0, 2.0, 3.0, 6.0])
    assert isinstance(got, MeanSE)
    assert got.mean == pytest.approx(3.0)
    assert got.se == pytest.approx(np.std([1, 2, 3, 6], ddof=1) / 2.0)
    assert mean_se(np.array([0.5, 0.5])).se == 0.0


def test_too_small_samples_give_nan_not_an_error():
    assert math.isnan(mean_se([0.7]).se) and mean_se([0.7]).mean == 0.7
    assert all(math.isnan(v) for v in mean_se([]))


def test_a_table_is_refused():
    with pytest.raises(ValueError, match="1-D"):
        mean_se(np.zeros((2, 3)))
