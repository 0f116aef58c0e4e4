"""Which OpenRLHF runs the backend serves: refusals before anything starts, and the run plan."""

import pytest

from integrations.openrlhf.compat import plan_run
from integrations.openrlhf.spec_args import SpecArgError, SpecSettings

CPU_OK = ["--vllm.num_engines", "1", "--vllm.sync_backend", "gloo", "--ds.attn_implementation", "eager"]


@pytest.mark.parametrize(
    "extra, on_cpu, settings, message",
    [
        (["--vllm.num_engines", "0"], True, SpecSettings(), "--vllm.num_engines >= 1"),
        (["--vllm.tensor_parallel_size", "2"], False, SpecSettings(), "tensor_parallel_size must be 1"),
        (["--ds.lora.rank", "8"], False, SpecSettings(), "LoRA"),
        (["--algo.advantage.is_correction_level", "token", "--rollout.temperature", "0.6"], False, SpecSettings(),
         "temperature=0.6"),
        (["--rollout.top_p", "0.9"], False, SpecSettings(mode="exact"), "--spec.mode exact"),
        (["--train.colocate_all"], True, SpecSettings(), "GPU only"),
        (["--vllm.sync_backend", "nccl"], True, SpecSettings(), "--vllm.sync_backend gloo"),
        (["--ds.attn_implementation", "flash_attention_2"], True, SpecSettings(), "eager"),
        (["--ds.packing_samples"], True, SpecSettings(), "GPU only"),
        (["--vllm.num_engines", "2"], True, SpecSettings(sglang_urls=("http://h:1", "http://h:2")),
         "--spec.sglang_urls needs --vllm.num_engines 1 \\(got 2\\): one rollout actor drives all 2 SGLang servers"),
        (["--train.colocate_all"], False, SpecSettings(sglang_urls=("http://h:1",)), "does not apply with --spec.sglang_urls"),
    ],
)
def test_incompatible_combinations_are_refused(extra, on_cpu, settings, message):
    with pytest.raises(SpecArgError, match=message):
        plan_run(CPU_OK + extra, settings, on_cpu=on_cpu)


def test_sleep_mode_is_left_to_openrlhf_on_cpu():
    # OpenRLHF itself turns --vllm.enable_sleep off without --train.colocate_all; we do not refuse it.
    plan = plan_run(CPU_OK + ["--vllm.enable_sleep"], SpecSettings(), on_cpu=True)
    assert plan.num_engines == 1


def test_plan_counts_openrlhf_roles_and_reads_the_modes_that_matter():
    argv = CPU_OK + ["--actor.num_gpus_per_node", "1", "--algo.advantage.estimator", "group_norm",
                     "--algo.kl.init_coef", "0", "--reward.remote_url", "r.py", "--algo.dynamic_filtering_enable",
                     "--algo.dynamic_filtering_range", "0.1", "0.9", "--train.async_enable", "--train.partial_rollout_enable"]
    plan = plan_run(argv, SpecSettings(), on_cpu=True)
    assert (plan.ray_gpus, plan.ray_cpus) == (1, 4)
    assert plan.dynamic_filtering_range == (0.1, 0.9) and plan.async_enable and plan.partial_rollout
    assert plan_run(CPU_OK, SpecSettings(), on_cpu=True).dynamic_filtering_range is None


def test_plan_names_the_initial_policy():
    assert plan_run(CPU_OK + ["--actor.model_name_or_path", "/m"], SpecSettings(sglang_urls=("http://h:1",)),
                    on_cpu=True).pretrain == "/m"
