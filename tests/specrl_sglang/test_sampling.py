"""SamplingConfig: validation, the SGLang dict, and which settings reshape the sampler."""

import pytest

from specrl_sglang.sampling import SamplingConfig


def test_plain_sampling_has_no_reshaping_settings():
    assert SamplingConfig().reshaping_settings() == []
    assert SamplingConfig(stop_token_ids=(3,), ignore_eos=True).reshaping_settings() == []


def test_each_reshaping_setting_is_named_with_its_value():
    s = SamplingConfig(temperature=0.7, top_p=0.9, top_k=20, min_p=0.05)
    assert s.reshaping_settings() == ["temperature=0.7", "top_p=0.9", "top_k=20", "min_p=0.05"]


def test_greedy_passes_only_when_allowed():
    assert SamplingConfig(temperature=0.0).reshaping_settings() == ["temperature=0.0"]
    assert SamplingConfig(temperature=0.0).reshaping_settings(allow_greedy=True) == []
    assert SamplingConfig(temperature=0.5).reshaping_settings(allow_greedy=True) == ["temperature=0.5"]


@pytest.mark.parametrize("kwargs, name", [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"),
                                          ({"top_k": 0}, "top_k"), ({"min_p": 2.0}, "min_p"),
                                          ({"stop_token_ids": (-1,)}, "stop_token_ids")])
def test_bad_settings_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SamplingConfig(**kwargs)


def test_to_sglang_carries_every_setting():
    params = SamplingConfig(temperature=0.5, top_k=4, stop_token_ids=(7,)).to_sglang(12)
    assert params == {"max_new_tokens": 12, "temperature": 0.5, "top_p": 1.0, "top_k": 4, "min_p": 0.0,
                      "ignore_eos": False, "stop_token_ids": [7]}
