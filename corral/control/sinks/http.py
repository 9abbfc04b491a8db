"""HTTP sinks: webhook, Slack, Splunk HEC, Elasticsearch/OpenSearch bulk, Loki, Alertmanager.

Each sink is a request shape over one aiohttp session: ``requests(batch)`` builds the
(path, body, content type) to send, ``check(status, body)`` reads the answer. Timeouts,
connection errors, 429 and 5xx are retryable; any other refusal is permanent (dead-lettered).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import aiohttp
import orjson

from corral.control.sinks.base import SinkError

Request = tuple[str, bytes, str]  # path appended to the base url, body, content type
JSON = "application/json"


class HttpSink:
    """Base: POST each request of a batch; subclasses say what to send and how to read replies."""

    def __init__(self, name: str, url: str, session: aiohttp.ClientSession, *,
                 timeout: float, token: str | None = None, index: str | None = None) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.token = token
        self.index = index
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def headers(self) -> dict[str, str]:
        return {}

    def requests(self, batch: list[dict[str, Any]]) -> list[Request]:
        return [("", orjson.dumps(batch), JSON)]

    def check(self, status: int, body: bytes) -> None:
        _check_status(status, body)

    async def emit(self, batch: list[dict[str, Any]]) -> None:
        for path, body, ctype in self.requests(batch):
            await self._post(self.url + path, body, ctype)

    async def _post(self, url: str, body: bytes, ctype: str) -> None:
        headers = {"Content-Type": ctype, **self.headers()}
        try:
            async with self._session.post(url, data=body, headers=headers,
                                          timeout=self._timeout) as resp:
                answer = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        self.check(status, answer)

    async def aclose(self) -> None:
        """The session is shared and closed by the app."""


def _check_status(status: int, body: bytes) -> None:
    if 200 <= status < 300:
        return
    text = body[:200].decode("utf-8", "replace")
    retry = status == 429 or status >= 500 or status == 408
    raise SinkError(f"HTTP {status}: {text}", retryable=retry)


class WebhookSink(HttpSink):
    """Generic webhook: one POST per batch, a JSON array of notices (or events)."""


class SlackSink(HttpSink):
    """Slack incoming webhook: one message ({"text", "blocks"}) per item."""

    def requests(self, batch: list[dict[str, Any]]) -> list[Request]:
        return [("", orjson.dumps(_slack_message(item)), JSON) for item in batch]


class SplunkSink(HttpSink):
    """Splunk HTTP Event Collector: concatenated event envelopes, ``Authorization: Splunk``."""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Splunk {self.token}"} if self.token else {}

    def requests(self, batch: list[dict[str, Any]]) -> list[Request]:
        body = b"".join(orjson.dumps(self._envelope(i)) for i in batch)
        return [("/services/collector/event", body, JSON)]

    def _envelope(self, item: dict[str, Any]) -> dict[str, Any]:
        env: dict[str, Any] = {"time": _when(item), "source": "corral",
                               "sourcetype": f"corral:{_kind(item)}", "event": item}
        host = (item.get("incident") or {}).get("pod") if _kind(item) == "incident" else None
        if host:
            env["host"] = host
        if self.index:
            env["index"] = self.index
        return env


class ElasticSink(HttpSink):
    """Elasticsearch/OpenSearch ``_bulk`` NDJSON with ``create`` + ``_id`` = item key, so a
    redelivered item is a 409 conflict, not a duplicate document."""

    def requests(self, batch: list[dict[str, Any]]) -> list[Request]:
        index = self.index or "corral"
        lines = []
        for item in batch:
            lines.append(orjson.dumps({"create": {"_index": index, "_id": item.get("key")}}))
            # the document is the item plus @timestamp, spliced in before the closing brace
            stamp = b',"@timestamp":"' + _iso(_when(item)).encode() + b'"}'
            lines.append(orjson.dumps(item)[:-1] + stamp)
        return [("/_bulk", b"\n".join(lines) + b"\n", "application/x-ndjson")]

    def check(self, status: int, body: bytes) -> None:
        _check_status(status, body)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SinkError(f"bulk answer is not JSON: {body[:100]!r}") from None
        if not answer.get("errors"):
            return
        bad = [st for it in answer.get("items", []) for op in it.values()
               if (st := int(op.get("status", 500))) >= 300 and st != 409]
        if bad:
            retry = any(s == 429 or s >= 500 for s in bad)
            raise SinkError(f"bulk: {len(bad)} items failed (status {bad[0]})", retryable=retry)


class LokiSink(HttpSink):
    """Loki push API: streams keyed by labels (source, kind, severity, agent); values are
    [nanosecond timestamp string, JSON line]."""

    def requests(self, batch: list[dict[str, Any]]) -> list[Request]:
        streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for item in batch:
            labels = _labels(item)
            line = orjson.dumps(item).decode()
            streams.setdefault(labels, []).append([str(int(_when(item) * 1e9)), line])
        body = {"streams": [{"stream": dict(k), "values": v} for k, v in streams.items()]}
        return [("/loki/api/v1/push", orjson.dumps(body), JSON)]


class AlertmanagerSink(HttpSink):
    """Alertmanager v2 API: one alert per incident; ``closed`` sets ``endsAt`` (resolves it)."""

    def requests(self, batch: list[dict[str, Any]]) -> list[Request]:
        return [("/api/v2/alerts", orjson.dumps([_alert(i) for i in batch]), JSON)]


def _kind(item: dict[str, Any]) -> str:
    return "incident" if "incident" in item and isinstance(item["incident"], dict) else "event"


def _when(item: dict[str, Any]) -> float:
    return float(item.get("time") or time.time())


def _iso(ts: float) -> str:
    return _iso_second(int(ts)) + f".{int(ts % 1 * 1000):03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _labels(item: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    body = item["incident"] if _kind(item) == "incident" else item
    return (("source", "corral"), ("kind", _kind(item)),
            ("severity", str(body.get("severity", ""))), ("agent", str(body.get("agent") or "")))


def _slack_message(item: dict[str, Any]) -> dict[str, Any]:
    if _kind(item) == "incident":
        inc = item["incident"]
        head = (f"[{inc['severity'].upper()}] incident {item['kind']}: {inc['rule']} "
                f"(agent {inc['agent'] or '?'}, {inc['count']} events)")
        detail = inc.get("summary") or ""
    else:
        head = f"[{str(item.get('severity', '')).upper()}] {item.get('rule')}"
        detail = str(item.get("output", ""))
    return {"text": head, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*"}},
        {"type": "section", "text": {"type": "plain_text", "text": detail[:2900] or "-"}},
    ]}


def _alert(item: dict[str, Any]) -> dict[str, Any]:
    inc = item["incident"] if _kind(item) == "incident" else item
    labels = {"alertname": "CorralIncident", "severity": str(inc.get("severity", "")),
              "agent": str(inc.get("agent") or ""), "rule": str(inc.get("rule", "")),
              "incident": str(inc.get("id") or inc.get("incident") or "")}
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": str(inc.get("summary") or inc.get("output") or "")[:1000],
                        "count": str(inc.get("count", 1))},
        "startsAt": _iso(float(inc.get("first_seen") or _when(item))),
        "generatorURL": "corral://incidents/" + labels["incident"],
    }
    if item.get("kind") == "closed":
        alert["endsAt"] = _iso(_when(item))
    return alert
