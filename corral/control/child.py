"""Stopping a worker child process of ``corral serve`` (behaviour feed, sink delivery): close its
stdin (its signal to finish), give it ``timeout`` seconds, then kill it; wait for the task that
reads its answers so nothing it wrote last is lost."""

from __future__ import annotations

import asyncio


async def stop_child(proc: asyncio.subprocess.Process, reader: asyncio.Task[None] | None,
                     timeout: float) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    if reader is not None:
        await asyncio.gather(reader, return_exceptions=True)
