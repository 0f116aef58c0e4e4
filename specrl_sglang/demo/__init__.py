"""The embedded RL demo: GRPO on a verifiable string task with vanilla vs. speculative rollouts."""
