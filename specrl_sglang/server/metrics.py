"""Prometheus metrics of the rollout service, in a private registry (no global side effects).

Counters grow over the server's life; gauges show the current policy version, the store's size and
the last step's ratios. Every metric is prefixed `specrl_`. `render()` gives the text exposition
format served at GET /metrics.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_STEP_COUNTERS = {  # step-row field -> counter name suffix and help
    "num_samples": ("samples", "samples returned"),
    "num_fully_reused": ("fully_reused_samples", "samples returned whole from their draft"),
    "num_with_draft": ("drafted_samples", "samples that were offered a draft"),
    "num_tokens_decoded": ("tokens_decoded", "tokens the engine decoded"),
    "num_tokens_reused": ("tokens_reused", "draft tokens accepted and reused"),
    "num_draft_tokens": ("draft_tokens", "draft tokens offered for verification"),
    "kv_cached_tokens": ("kv_cached_tokens", "prefix tokens SGLang served from the verify pass's KV"),
    "kv_expected_tokens": ("kv_expected_tokens", "prefix tokens expected to be served from the verify pass's KV"),
}
_STORE_GAUGES = {
    "total_tokens": "tokens held by the trajectory store",
    "num_prompts": "prompts held by the trajectory store",
    "num_samples": "samples held by the trajectory store",
    "num_evicted_prompts": "prompts evicted by the store's token budget (since its counters began)",
    "num_evicted_tokens": "tokens evicted by the store's token budget (since its counters began)",
}


class ServiceMetrics:
    """Thread-safe (prometheus_client metrics are); one instance per service."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("specrl_http_requests", "HTTP requests", ["endpoint", "status"], registry=registry)
        self.request_seconds = Histogram(
            "specrl_http_request_seconds", "HTTP request latency", ["endpoint"], buckets=_LATENCY_BUCKETS, registry=registry
        )
        self.steps = Counter("specrl_rollout_steps", "rollout steps served", ["mode"], registry=registry)
        self.step_seconds = Histogram(
            "specrl_rollout_step_seconds", "time of one rollout step (verify + continue + assemble)",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.step_counters = {
            field: Counter(f"specrl_{name}", help_text, registry=registry) for field, (name, help_text) in _STEP_COUNTERS.items()
        }
        self.weight_updates = Counter("specrl_weight_updates", "successful weight updates", registry=registry)
        self.snapshots = Counter("specrl_snapshots", "trajectory-store snapshots written", registry=registry)
        self.engine_restarts = Counter("specrl_engine_restarts", "SGLang engine deaths the server recovered from", registry=registry)
        self.policy_version = Gauge("specrl_policy_version", "policy version of the served weights", registry=registry)
        self.last_full_reuse = Gauge("specrl_last_full_reuse_ratio", "full-reuse ratio of the last step", registry=registry)
        self.last_kv_hit = Gauge("specrl_last_kv_hit_ratio", "KV hit ratio of the last step (NaN: no continuation after verify)", registry=registry)
        self.store = {name: Gauge(f"specrl_store_{name}", help_text, registry=registry) for name, help_text in _STORE_GAUGES.items()}

    def observe_step(self, row: dict[str, Any]) -> None:
        self.steps.labels(row.get("mode", "spec-rl")).inc()
        self.step_seconds.observe(row["total_s"])
        for field, counter in self.step_counters.items():
            counter.inc(row[field])
        self.last_full_reuse.set(row["full_reuse_ratio"])
        self.last_kv_hit.set(float("nan") if row["kv_hit_ratio"] is None else row["kv_hit_ratio"])

    def set_state(self, policy_version: int, store_stats: dict[str, Any]) -> None:
        self.policy_version.set(policy_version)
        for name, gauge in self.store.items():
            gauge.set(store_stats[name])

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
