"""BackgroundTask.stop() ends the task even when something below swallows a cancellation."""

from __future__ import annotations

import asyncio

from dialogue_fastapi.core.background import RECANCEL, BackgroundTask


async def test_stop_ends_a_loop_whose_first_cancellation_was_swallowed() -> None:
    """What redis-py did to the liveness loop: a call returned normally to a task that had
    been cancelled, and the loop went on. stop() must still end it (it cancels again)."""
    beats = 0
    swallowed = asyncio.Event()

    async def call_that_swallows_a_cancellation() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # returned as if the call had answered

    async def loop() -> None:
        nonlocal beats
        while True:
            beats += 1
            if not swallowed.is_set():
                await call_that_swallows_a_cancellation()
            await asyncio.sleep(0.01)

    task = BackgroundTask("test-loop", loop)
    task.start()
    await asyncio.sleep(0)  # the loop is inside the call
    await asyncio.wait_for(task.stop(), timeout=RECANCEL * 4)
    assert swallowed.is_set() and not task.running
    after = beats
    await asyncio.sleep(0.05)
    assert beats == after, "the loop went on after stop()"

