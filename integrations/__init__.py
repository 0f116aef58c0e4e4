"""Adapters that plug specrl-sglang into RL trainers (OpenRLHF)."""
