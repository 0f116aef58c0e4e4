"""RolloutEngine on a real CPU sglang.Engine: log-probs, KV reuse, weight updates, bad input."""

import numpy as np
import pytest
import torch

from specrl_sglang.engine import EngineError, RolloutEngine
from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.sampling import SamplingConfig

PROMPT = np.array([5, 9, 13, 17, 21, 25, 29, 33, 37, 41], dtype=np.int32)


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    with RolloutEngine(EngineConfig(model_path=tiny_model_path, max_total_tokens=8192)) as eng:
        yield eng


def hf_logprobs(model_path, state_dict, prompt, response):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=False)
        model.tie_weights()
    ids = torch.tensor([np.concatenate([prompt, response]).tolist()])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    return lp[len(prompt) - 1 : -1].gather(-1, ids[0, len(prompt) :, None])[:, 0].numpy()


def test_smoke_generate_then_extension_hits_the_radix_cache(engine):
    first = engine.generate([PROMPT], [12], SamplingConfig())[0]
    assert 1 <= len(first.token_ids) <= 12 and first.finish_reason in ("stop", "length")
    extended = np.concatenate([PROMPT, first.token_ids, [7]])
    second = engine.generate([extended], [4], SamplingConfig())[0]
    assert second.cached_tokens > 0


def test_verify_log_probs_match_transformers_and_sampling_log_probs(engine, tiny_model_path):
    engine.flush_cache()
    out = engine.generate([PROMPT], [16], SamplingConfig(ignore_eos=True))[0]
    verified = engine.verify([PROMPT], [out.token_ids])[0]
    np.testing.assert_allclose(verified.logprobs, out.logprobs, atol=1e-4)
    np.testing.assert_allclose(verified.logprobs, hf_logprobs(tiny_model_path, None, PROMPT, out.token_ids), atol=1e-4)


def test_sampled_log_probs_stay_raw_at_other_temperatures(engine):
    # One convention end to end: decode log-probs are not divided by the temperature.
    out = engine.generate([PROMPT], [12], SamplingConfig(temperature=0.5, ignore_eos=True))[0]
    verified = engine.verify([PROMPT], [out.token_ids])[0]
    np.testing.assert_allclose(out.logprobs, verified.logprobs, atol=1e-4)


def test_continuation_reuses_the_verify_pass_kv(engine):
    engine.flush_cache()
    draft = engine.generate([PROMPT], [20], SamplingConfig(ignore_eos=True))[0].token_ids
    engine.flush_cache()
    engine.verify([PROMPT] * 4, [draft] * 4)
    cuts = [0, 3, 11, 19]
    outs = engine.generate([np.concatenate([PROMPT, draft[:k]]) for k in cuts], [4] * 4, SamplingConfig())
    assert [o.cached_tokens for o in outs] == [len(PROMPT) + k - 1 for k in cuts]


def test_weight_update_flushes_kv_and_changes_log_probs(engine, tiny_model_path):
    engine.flush_cache()
    draft = engine.generate([PROMPT], [16], SamplingConfig(ignore_eos=True))[0].token_ids
    before = engine.verify([PROMPT], [draft])[0].logprobs
    version = engine.policy_version
    gen = torch.Generator().manual_seed(0)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    new_sd = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in base.named_parameters()}
    assert engine.update_weights(new_sd.items()) == version + 1
    stale = engine.generate([np.concatenate([PROMPT, draft])], [2], SamplingConfig())[0]
    assert stale.cached_tokens == 0  # no KV of the old weights survived
    after = engine.verify([PROMPT], [draft])[0].logprobs
    assert np.abs(after - before).max() > 1e-2
    np.testing.assert_allclose(after, hf_logprobs(tiny_model_path, new_sd, PROMPT, draft), atol=1e-4)
    engine.update_weights(list(base.named_parameters()))  # restore for other tests


def test_bad_input_gets_clear_errors(engine):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.verify([PROMPT], [[engine.vocab_size + 5]])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.generate([[-1, 3]], [4], SamplingConfig())
    with pytest.raises(ValueError, match="context length"):
        engine.generate([PROMPT], [engine.context_len], SamplingConfig())
    with pytest.raises(ValueError, match="integer token ids"):
        engine.generate([[1.5, 2.0]], [4], SamplingConfig())
    with pytest.raises(ValueError, match="non-empty"):
        engine.verify([PROMPT], [[]])
    with pytest.raises(ValueError, match="no tensors"):
        engine.update_weights([])
    with pytest.raises(EngineError, match="enable_memory_saver"):
        engine.release_memory()  # the CPU profile has no memory saver
    with pytest.raises(ValueError, match="enable_memory_saver needs profile='gpu'"):
        EngineConfig(model_path="m", enable_memory_saver=True)
    # the engine still serves requests afterwards
    assert len(engine.generate([PROMPT], [2], SamplingConfig())[0].token_ids) >= 1


def test_streamed_weight_update_equals_a_whole_update_and_blocks_requests(engine, tiny_model_path):
    import threading

    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    gen = torch.Generator().manual_seed(3)
    new_sd = [(k, v.detach() + 0.05 * torch.randn(v.shape, generator=gen)) for k, v in base.named_parameters()]
    draft = engine.generate([PROMPT], [8], SamplingConfig(ignore_eos=True))[0].token_ids
    version = engine.policy_version
    engine.begin_weight_update()
    served = []
    waiter = threading.Thread(target=lambda: served.append(engine.verify([PROMPT], [draft])[0]))
    waiter.start()
    for pair in new_sd:  # one parameter at a time, as OpenRLHF broadcasts them
        engine.load_weights([pair])
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and not served  # the request waits for the update to close
    assert engine.end_weight_update() == version + 1
    waiter.join(timeout=60)
    np.testing.assert_allclose(served[0].logprobs, hf_logprobs(tiny_model_path, dict(new_sd), PROMPT, draft), atol=1e-4)
    with pytest.raises(EngineError, match="open weight update"):
        engine.load_weights(new_sd[:1])
    engine.update_weights(list(base.named_parameters()))  # restore for other tests


def test_a_failed_streamed_update_poisons_the_engine_until_a_good_one(engine, tiny_model_path):
    from transformers import AutoModelForCausalLM

    base = list(AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).named_parameters())
    with pytest.raises(ValueError, match="no parameter named 'model.no_such_weight'"):
        engine.update_weights([("model.no_such_weight", torch.zeros(3))])
    assert not engine.poisoned  # rejected before anything was loaded
    engine.begin_weight_update()
    engine.load_weights(base[:1])
    with pytest.raises(ValueError, match="no parameter named"):
        engine.load_weights([("lm_head.bias", torch.zeros(3))])
    engine.abort_weight_update()  # half an update is in the engine now
    assert engine.poisoned
    with pytest.raises(EngineError, match="weight update failed"):
        engine.generate([PROMPT], [2], SamplingConfig())
    engine.update_weights(base)
    assert not engine.poisoned
    assert len(engine.generate([PROMPT], [2], SamplingConfig())[0].token_ids) >= 1
