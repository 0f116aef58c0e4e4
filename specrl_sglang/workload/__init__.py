"""The embedded RLVR workload: verifiable tasks, a tiny local policy (built and SFT-warmed on CPU,
cached), its torch trainer (GRPO), and the training loop that drives a RolloutRuntime.

The demo (`specrl-sglang demo`) and the benchmarks (`bench rollout`, `bench quality`,
`bench fidelity`) all run this workload; none of them imports another.
"""
