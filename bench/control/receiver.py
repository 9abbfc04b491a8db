"""Benchmark sink receiver: an Elasticsearch ``_bulk`` endpoint (and a webhook) that appends the
``_id`` of every document it accepts to a file, so losses and duplicates can be counted even
across the receiver being killed and restarted (the simulated outage)."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
from aiohttp import web


def make_app(ids_path: Path, hooks_path: Path) -> web.Application:
    ids = ids_path.open("ab")
    hooks = hooks_path.open("ab")

    async def bulk(request: web.Request) -> web.Response:
        lines = (await request.read()).split(b"\n")
        got = [orjson.loads(line)["create"]["_id"] for line in lines[::2] if line]
        ids.write(b"".join(i.encode() + b"\n" for i in got))
        ids.flush()
        items = [{"create": {"_id": i, "status": 201}} for i in got]
        return web.json_response({"took": 1, "errors": False, "items": items},
                                 dumps=lambda o: orjson.dumps(o).decode())

    async def hook(request: web.Request) -> web.Response:
        for item in orjson.loads(await request.read()):
            inc = item["incident"]
            hooks.write(orjson.dumps({"key": item["key"], "kind": item["kind"], "id": inc["id"],
                                      "count": inc["count"], "status": inc["status"]}) + b"\n")
        hooks.flush()
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/_bulk", bulk)
    app.router.add_post("/hook", hook)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ids", type=Path, required=True)
    p.add_argument("--hooks", type=Path, required=True)
    a = p.parse_args()
    web.run_app(make_app(a.ids, a.hooks), host="127.0.0.1", port=a.port, print=None)


if __name__ == "__main__":
    main()
