"""Benchmark sink receiver: an Elasticsearch ``_bulk`` endpoint (and a webhook) that appends the
``_id`` of every document it creates to a file, so losses and duplicates can be counted even
across the receiver being killed and restarted (the simulated outage). Like Elasticsearch, a
``create`` of an ``_id`` that exists answers 409 (counted in a second file): a batch whose
answer was lost when the receiver died is redelivered, and must not become a duplicate."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
from aiohttp import web


def make_app(ids_path: Path, hooks_path: Path) -> web.Application:
    seen = set(ids_path.read_bytes().split()) if ids_path.exists() else set()
    ids = ids_path.open("ab")
    conflicts = ids_path.with_suffix(".409").open("ab")
    hooks = hooks_path.open("ab")

    async def bulk(request: web.Request) -> web.Response:
        lines = (await request.read()).split(b"\n")
        got = [orjson.loads(line)["create"]["_id"].encode() for line in lines[::2] if line]
        new = [i for i in got if i not in seen]
        seen.update(new)
        ids.write(b"".join(i + b"\n" for i in new))
        ids.flush()
        conflicts.write(b"".join(i + b"\n" for i in got if i not in new))
        conflicts.flush()
        fresh = set(new)
        items = [{"create": {"_id": i.decode(), "status": 201 if i in fresh else 409}}
                 for i in got]
        return web.json_response({"took": 1, "errors": len(fresh) < len(got), "items": items},
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
