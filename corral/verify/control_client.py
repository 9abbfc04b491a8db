"""A small client for ``corral serve``'s JSON API, as the validation jobs use it.

Where it sits: ``corral verify --context`` asks it whether the Falco event of its test pod
arrived (``GET /v1/incidents``). Plain ``urllib`` with proxies disabled (the control plane is
reached directly, e.g. through ``kubectl port-forward``); bounded timeouts.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ControlError(RuntimeError):
    """corral serve did not answer as expected; the message says what it answered."""


def get_json(url: str, *, timeout: float = 5.0, token: str | None = None) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with opener.open(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise ControlError(f"GET {url}: {exc.code} {exc.read()[:200]!r}") from None
    except (OSError, ValueError) as exc:
        raise ControlError(f"GET {url}: {exc}") from None


def _mentions_pod(incident: dict[str, Any], namespace: str, pod: str) -> bool:
    if incident.get("pod") == pod and incident.get("namespace") in (namespace, None):
        return True
    return any(s.get("pod") == pod for s in incident.get("samples") or ())


def find_event(base_url: str, namespace: str, pod: str, since: float,
               rule: str | None = None, *, token: str | None = None) -> str | None:
    """Evidence of an incident holding a Falco event of ``pod`` (of ``rule``, when given) seen at
    or after ``since``."""
    body = get_json(f"{base_url.rstrip('/')}/v1/incidents?limit=1000", token=token)
    for inc in body.get("incidents", []) if isinstance(body, dict) else []:
        if not _mentions_pod(inc, namespace, pod):
            continue
        if float(inc.get("last_seen") or 0) + 1.0 < since:
            continue
        if rule is not None and rule not in (inc.get("rules") or [inc.get("rule")]):
            continue
        return (f"incident {inc.get('id')}: rules {sorted(inc.get('rules') or [inc.get('rule')])}"
                f", {inc.get('count')} events, pod {namespace}/{pod}")
    return None
