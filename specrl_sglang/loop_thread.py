"""LoopThread: one asyncio event loop running forever on its own thread.

Everything that talks to an engine runs as coroutines on this loop (SGLang's tokenizer manager and
aiohttp sessions are bound to the loop they were first used on). Callers on other threads submit
work with `run` (block until done), `submit` (a concurrent.futures.Future) or `wrap` (an awaitable
for a caller that runs its own event loop, e.g. a Starlette handler or an async Ray actor).

Contracts: `run` and `wrap` must not be called from the loop's own thread (it would wait on
itself; `run` raises RuntimeError instead). `close()` stops the loop after running `finalizer`
(if given) on it, and joins the thread; afterwards every call raises RuntimeError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """A daemon thread whose event loop runs until `close()`."""

    def __init__(self, name: str = "specrl-loop", init: Callable[[], Any] | None = None) -> None:
        """Start the thread; `init` (if given) runs on it before the loop starts, and its return
        value (or exception) is re-raised here: use it to build objects that must live on the loop's
        thread, such as an in-process SGLang engine."""
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._init_result: list[Any] = [None, None]
        self._closed = False
        self._thread = threading.Thread(target=self._main, args=(init,), name=name, daemon=True)
        self._thread.start()
        self._started.wait()
        result, error = self._init_result
        if error is not None:
            self._thread.join()
            raise error
        self.init_result = result

    def _main(self, init: Callable[[], Any] | None) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._init_result[0] = init() if init is not None else None
        except BaseException as exc:  # reported to the constructor
            self._init_result[1] = exc
            self._started.set()
            self.loop.close()
            return
        self._started.set()
        self.loop.run_forever()
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:  # e.g. SGLang's tokenizer-manager loops: cancel them quietly
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the rollout loop is closed")

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the loop; returns a thread-safe future of its result."""
        self._check_open()
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and block the calling thread until it returns (or raises)."""
        if self.in_loop_thread:
            coro.close()
            raise RuntimeError("LoopThread.run called from the loop's own thread; await the coroutine instead")
        return self.submit(coro).result(timeout)

    def wrap(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """An awaitable of `coro`'s result for a caller running another event loop."""
        if self.in_loop_thread:
            return coro
        return asyncio.wrap_future(self.submit(coro))

    def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Run a plain callable on the loop thread (serialised with every coroutine there)."""

        async def call() -> T:
            return fn()

        return self.run(call(), timeout)

    def close(self, finalizer: Callable[[], Any] | None = None, timeout: float = 60.0) -> None:
        """Run `finalizer` on the loop thread (errors propagate), stop the loop, join the thread."""
        if self._closed:
            return
        try:
            if finalizer is not None:
                self.call(finalizer, timeout)
        finally:
            self._closed = True
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
