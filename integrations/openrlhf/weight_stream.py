"""OpenRLHF's weight sync streamed into one `RolloutRuntime` weight-update session.

The trainer calls, per training step (openrlhf/trainer/ray/ppo_actor.py::broadcast_to_vllm):
`update_weight(name, dtype, shape, empty_cache=is_last)` once per parameter, each followed by a
broadcast of that tensor. With `--train.async_enable --train.partial_rollout_enable` it brackets
the round with `pause_generation()` ... `resume_generation()` (ppo_trainer_async.TrainingActor)
and generation keeps running meanwhile; vLLM's own pause ("keep") then finishes in-flight samples
under the new weights, mixing two policies in one sample. Ours:

- `pause()` opens the runtime's update session with `interrupt=True`: rollout steps in flight are
  aborted where they are and park with their partial responses; no step starts until the round
  ends. After the round they resume and re-verify those partial responses as drafts under the new
  weights (the step's rule decides what is kept), so no decoded work the rule accepts is lost and
  every returned sample is entirely under one policy (see specrl_sglang/rollout_step.py).
- `receive(...)` for a parameter: opens the session if no pause did (`interrupt=False`: the
  update waits for steps in flight; in OpenRLHF's other modes none are), receives the tensor and
  loads it at once (`load_weights`); the last parameter (`empty_cache=True`) closes the session:
  the runtime flushes every KV entry computed under the old weights, then bumps the policy version.
- `resume()` after a complete round does nothing; after an incomplete one it aborts the session
  and the runtime stays poisoned (refuses steps) until the next complete round.
Any failure aborts the session the same way. Every method blocks: the actor runs them one at a
time on its weight-sync thread, never on its event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class WeightStream:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.open = False
        self.num_rounds = 0  # completed rounds
        self.num_interrupting_rounds = 0  # of which opened by pause() (partial rollouts)
        self.num_aborted_rounds = 0
        self._interrupting = False

    def pause(self) -> float:
        """Open the session, interrupting steps in flight; returns the seconds waited for them to park."""
        if self.open:
            return 0.0
        waited = self.runtime.begin_weight_update(interrupt=True)
        self.open, self._interrupting = True, True
        return waited

    def receive(self, receive: Callable[[], tuple[str, Any]], last: bool) -> int | None:
        """Receive one parameter (`receive()` -> (name, tensor)) into the session; the last one
        closes it and returns the new policy version."""
        if not self.open:
            self.runtime.begin_weight_update(interrupt=False)
            self.open, self._interrupting = True, False
        try:
            self.runtime.load_weights([receive()])  # load_weights aborts the session itself if it fails
            if not last:
                return None
            version = self.runtime.end_weight_update()
        except BaseException:
            self._abort()
            raise
        self.open = False
        self.num_rounds += 1
        self.num_interrupting_rounds += self._interrupting
        return version

    def resume(self) -> bool:
        """End of a paused round: False if it was left open (incomplete) and had to be aborted here;
        True if it completed or a failure already aborted it (the runtime is then poisoned)."""
        if not self.open:
            return True
        self._abort()
        return False

    def _abort(self) -> None:
        self.runtime.abort_weight_update()  # a no-op if the runtime closed it already
        if self.open:
            self.num_aborted_rounds += 1
        self.open = False
