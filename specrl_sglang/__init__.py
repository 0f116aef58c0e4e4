"""SPEC-RL speculative rollouts on SGLang."""

__version__ = "0.1.0"
