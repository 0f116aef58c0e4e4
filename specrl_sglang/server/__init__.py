"""`specrl-sglang serve`: speculative rollouts as an HTTP service next to one or many trainers.

One process owns everything stateful: the SGLang runtime (the offline `sglang.Engine`, in
process, through `RolloutEngine`), the `TrajectoryStore` of drafts and the `SpecRollout` that
uses both. A small HTTP app in front of it accepts msgpack (or JSON) bodies from any number of
local or remote clients; a lock in `RolloutService` runs one rollout step or weight update at a
time, and every response names the policy version it was served under.

Files: codec.py (bodies, content types, size limits), schema.py (request validation -> ApiError),
service.py (engine + store + rollout owner, step history, snapshots), metrics.py (Prometheus),
app.py (routes), client.py (`RolloutClient`), main.py (the `serve` subcommand).
"""
