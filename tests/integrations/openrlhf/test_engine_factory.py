"""EngineConfig from our settings and OpenRLHF's create_vllm_engines arguments."""

from integrations.openrlhf.engine_factory import engine_config
from integrations.openrlhf.spec_args import SpecSettings


def test_cpu_and_gpu_recipes_and_sleep_mode():
    cpu = engine_config(SpecSettings(engine_profile="cpu"), "m", 3, False, 0.5)
    assert cpu.profile == "cpu" and cpu.dtype == "float32" and cpu.random_seed == 3
    assert cpu.engine_kwargs()["mem_fraction_static"] == 0.5  # EngineConfig's CPU default
    assert engine_config(SpecSettings(engine_profile="cpu", mem_fraction_static=0.2), "m", 0, False, 0.9).mem_fraction_static == 0.2
    gpu = SpecSettings(engine_profile="gpu")
    kwargs = engine_config(gpu, "m", 0, True, 0.5, enable_sleep=True).engine_kwargs()
    assert kwargs["enable_memory_saver"] is True and kwargs["disable_cuda_graph"] is True and kwargs["mem_fraction_static"] == 0.5
    assert "enable_memory_saver" not in engine_config(gpu, "m", 0, False, 0.5).engine_kwargs()
