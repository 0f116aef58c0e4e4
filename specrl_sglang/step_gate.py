"""StepGate: rollout steps versus exclusive sections (weight updates, cache flushes, store swaps).

Runs on the rollout loop only (asyncio primitives, no threads). Rules:
- Any number of steps run at once (`enter_step` / `exit_step`); SGLang batches their requests.
- An exclusive section (`exclusive(...)`) starts only when no step is active and no other section is
  open; while one waits or runs, no new step enters (writer preference: updates do not starve).
- With `interrupt=True` the section asks active steps to stop: `interrupting` turns True, the
  `on_interrupt` callback runs (the runtime aborts every engine request in flight, and repeats it
  every `REABORT_S` while it waits), and each step `park()`s once its requests have returned. A
  parked step is not active; it resumes after the section (and any section queued behind it) ends.
So a step never overlaps an exclusive section: the policy a step sees cannot change under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

REABORT_S = 0.5


class GateTimeout(TimeoutError):
    """An exclusive section could not start within its wait limit; nothing was changed."""


class StepGate:
    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self.num_active_steps = 0
        self.num_parked_steps = 0
        self.num_waiting_sections = 0
        self.section_open = False
        self._num_interrupters = 0  # sections waiting or open that asked steps to stop

    @property
    def interrupting(self) -> bool:
        """True while a section that interrupts steps waits or runs: steps send no new request."""
        return self._num_interrupters > 0

    @property
    def busy(self) -> bool:
        return bool(self.num_active_steps or self.num_parked_steps or self.section_open or self.num_waiting_sections)

    def _steps_may_run(self) -> bool:
        return not self.section_open and self.num_waiting_sections == 0

    async def enter_step(self) -> None:
        async with self._cond:
            await self._cond.wait_for(self._steps_may_run)
            self.num_active_steps += 1

    async def exit_step(self) -> None:
        async with self._cond:
            self.num_active_steps -= 1
            self._cond.notify_all()

    async def park(self) -> None:
        """Called by an interrupted step with no request in flight: wait out the section(s)."""
        async with self._cond:
            self.num_active_steps -= 1
            self.num_parked_steps += 1
            self._cond.notify_all()
            await self._cond.wait_for(self._steps_may_run)
            self.num_parked_steps -= 1
            self.num_active_steps += 1

    @contextlib.asynccontextmanager
    async def exclusive(
        self, wait_s: float | None = None, interrupt: bool = False,
        on_interrupt: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[float]:
        """Hold the gate exclusively; yields the seconds waited. GateTimeout after `wait_s`."""
        t0 = time.perf_counter()
        deadline = None if wait_s is None else t0 + wait_s
        async with self._cond:
            self.num_waiting_sections += 1
            self._num_interrupters += interrupt
        try:
            while True:
                if interrupt and on_interrupt is not None and self.num_active_steps:
                    await on_interrupt()
                timeout = REABORT_S if interrupt else None
                if deadline is not None:
                    left = max(0.0, deadline - time.perf_counter())
                    timeout = left if timeout is None else min(timeout, left)
                async with self._cond:
                    try:
                        await asyncio.wait_for(
                            self._cond.wait_for(lambda: not self.section_open and self.num_active_steps == 0), timeout
                        )
                        self.section_open = True
                        break
                    except TimeoutError:
                        if deadline is not None and time.perf_counter() >= deadline:
                            raise GateTimeout(
                                f"{self.num_active_steps} rollout step(s) still in flight after {wait_s} s"
                            ) from None
        except BaseException:
            async with self._cond:
                self.num_waiting_sections -= 1
                self._num_interrupters -= interrupt
                self._cond.notify_all()
            raise
        async with self._cond:
            self.num_waiting_sections -= 1
        try:
            yield time.perf_counter() - t0
        finally:
            async with self._cond:
                self.section_open = False
                self._num_interrupters -= interrupt
                self._cond.notify_all()
