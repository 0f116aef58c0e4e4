"""vLLM SamplingParams (the real class OpenRLHF builds) -> SamplingConfig, and the log-prob convention."""

import pytest

from integrations.openrlhf.sampling_translation import (
    PROCESSED,
    UnsupportedSamplingError,
    translate_sampling,
)

vllm = pytest.importorskip("vllm")


def openrlhf_params(**overrides):
    """Exactly what openrlhf/trainer/ppo_utils/samples_generator.py builds, plus overrides."""
    kwargs = dict(temperature=1.0, top_p=1.0, top_k=-1, max_tokens=16, min_tokens=1, skip_special_tokens=False, logprobs=1)
    kwargs.update(overrides)
    return vllm.SamplingParams(**kwargs)


def test_openrlhf_default_params_translate_exactly():
    out = translate_sampling(openrlhf_params(temperature=0.7, top_p=0.9, top_k=20, stop_token_ids=[5]))
    s = out.sampling
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.stop_token_ids, s.ignore_eos) == (0.7, 0.9, 20, 0.0, (5,), False)
    assert out.max_new_tokens == 16 and out.num_logprobs == 1 and out.skip_special_tokens is False


def test_vllm_top_k_off_values_map_to_minus_one_and_max_tokens_none_is_kept():
    assert translate_sampling(openrlhf_params(top_k=0)).sampling.top_k == -1
    assert translate_sampling(openrlhf_params(top_k=-1)).sampling.top_k == -1
    assert translate_sampling(openrlhf_params(max_tokens=None)).max_new_tokens is None
    assert translate_sampling(openrlhf_params(logprobs=None)).num_logprobs is None


@pytest.mark.parametrize(
    "override, named",
    [
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"repetition_penalty": 1.1}, "repetition_penalty"),
        ({"stop": ["\n"]}, "stop"),
        ({"seed": 3}, "seed"),
        ({"n": 2}, "n=2"),
        ({"min_tokens": 4}, "min_tokens=4"),
        ({"logit_bias": {3: 1.0}}, "logit_bias"),
    ],
)
def test_unsupported_parameters_are_named_not_dropped(override, named):
    with pytest.raises(UnsupportedSamplingError, match=named):
        translate_sampling(openrlhf_params(**override))


def test_processed_logprobs_need_temperature_one_without_truncation():
    translate_sampling(openrlhf_params(), logprobs_mode=PROCESSED)  # T=1: raw == processed
    with pytest.raises(UnsupportedSamplingError, match="temperature=0.7"):
        translate_sampling(openrlhf_params(temperature=0.7), logprobs_mode=PROCESSED)
    with pytest.raises(UnsupportedSamplingError, match="top_p=0.9"):
        translate_sampling(openrlhf_params(top_p=0.9), logprobs_mode=PROCESSED)
    # Raw mode, or no log-probs requested: any temperature is fine.
    translate_sampling(openrlhf_params(temperature=0.7), logprobs_mode="raw_logprobs")
    translate_sampling(openrlhf_params(temperature=0.7, logprobs=None), logprobs_mode=PROCESSED)
    with pytest.raises(UnsupportedSamplingError, match="logprobs_mode"):
        translate_sampling(openrlhf_params(), logprobs_mode="processed_logits")
