"""Open N CONNECT tunnels through a proxy, complete TLS in each, then hold them idle.

Used by run.py to measure a proxy's memory with many idle tunnels. Prints one JSON line
(``{"open": N, "failed": M, "seconds": S, "first_error": ...}``) once every tunnel is up or
has failed, then keeps them open until SIGTERM. Bounded: gives up opening after --deadline s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import ssl
import sys
import time

import uvloop


async def one(port: int, authority: str, ctx: ssl.SSLContext, sem: asyncio.Semaphore,
              held: list[asyncio.StreamWriter]) -> None:
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            await writer.start_tls(ctx, server_hostname=authority.rsplit(":", 1)[0])
        except BaseException:
            writer.close()
            raise
        held.append(writer)


async def main(args: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(cafile=args.ca)
    sem = asyncio.Semaphore(args.parallel)
    held: list[asyncio.StreamWriter] = []
    start = time.monotonic()
    tasks = [asyncio.create_task(one(args.proxy_port, args.authority, ctx, sem, held))
             for _ in range(args.count)]
    done, pending = await asyncio.wait(tasks, timeout=args.deadline)
    for t in pending:
        t.cancel()
    errors = [t.exception() for t in done if t.exception() is not None]
    print(json.dumps({"open": len(held), "failed": len(errors) + len(pending),
                      "seconds": round(time.monotonic() - start, 1),
                      "first_error": repr(errors[0]) if errors else None}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for w in held:
        w.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy-port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--authority", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--parallel", type=int, default=200)
    ap.add_argument("--deadline", type=float, default=120.0)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(main(ap.parse_args()))
    sys.exit(0)
