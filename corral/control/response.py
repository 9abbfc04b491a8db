"""Response: quarantine an agent, and release it. Every action is logged in the store.

Quarantine = (1) the gateway flips the agent to deny-all at once: ``PUT /v1/quarantine/<agent>``
on each gateway admin URL (local stack) and/or the overlay file ``{"quarantined": [...]}`` the
gateway watches (in a cluster, the mounted ConfigMap, patched through the Kubernetes API); and
(2) in a cluster, the agent's pods get the label ``corral.dev/quarantine=true`` (JSON merge patch)
so the rendered quarantine NetworkPolicy cuts them off. ``release`` undoes each step.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from corral.control.store import IncidentStore
from corral.model.control import is_namespace_name, is_object_name

log = logging.getLogger("corral.control.response")
QUARANTINE_LABEL = "corral.dev/quarantine"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
OVERLAY_KEY = "overlay.json"


@dataclass(frozen=True)
class KubeConfig:
    """Where the Kubernetes API is and how to authenticate (service-account token + CA)."""

    api: str  # https://host:port
    token_file: Path
    ca_file: Path
    overlay_configmap: tuple[str, str] | None = None  # (namespace, name) the gateway mounts

    @classmethod
    def in_cluster(cls, env: Mapping[str, str] = os.environ, sa_dir: Path = SA_DIR,
                   overlay_configmap: tuple[str, str] | None = None) -> KubeConfig | None:
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port or not (sa_dir / "token").exists():
            return None
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", sa_dir / "token", sa_dir / "ca.crt",
                   overlay_configmap)


class KubeClient:
    """The few Kubernetes API calls quarantine needs, over aiohttp with the cluster CA."""

    def __init__(self, cfg: KubeConfig, session: aiohttp.ClientSession, timeout: float = 10.0):
        self.cfg = cfg
        self._session = session
        self._ssl = ssl.create_default_context(cafile=str(cfg.ca_file))
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def _headers(self, ctype: str | None = None) -> dict[str, str]:
        # The token is re-read on every call: projected service-account tokens rotate.
        token = self.cfg.token_file.read_text().strip()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if ctype:
            headers["Content-Type"] = ctype
        return headers

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        async with self._session.request(
            method, self.cfg.api + path, data=data, ssl=self._ssl, timeout=self._timeout,
            headers=self._headers(MERGE_PATCH if data is not None else None),
        ) as resp:
            raw = await resp.read()
        try:
            return resp.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return resp.status, raw[:200].decode("utf-8", "replace")

    async def label_pod(self, namespace: str, pod: str, value: str | None) -> int:
        """Set (or, with None, remove) the quarantine label: JSON merge patch on the pod."""
        status, _ = await self._call("PATCH", api_path(namespace, "pods", pod),
                                     {"metadata": {"labels": {QUARANTINE_LABEL: value}}})
        return status

    async def pods(self, namespace: str, selector: Mapping[str, str]) -> list[str]:
        sel = quote(",".join(f"{k}={v}" for k, v in sorted(selector.items())))
        status, body = await self._call("GET", api_path(namespace, "pods")
                                        + f"?labelSelector={sel}")
        if status != 200 or not isinstance(body, dict):
            raise OSError(f"listing pods answered HTTP {status}")
        names = [p.get("metadata", {}).get("name") for p in body.get("items", [])]
        return [n for n in names if is_object_name(n)]

    async def set_overlay(self, quarantined: list[str]) -> int:
        """Write the gateway overlay into its ConfigMap (merge patch of one data key)."""
        assert self.cfg.overlay_configmap is not None
        ns, name = self.cfg.overlay_configmap
        doc = orjson.dumps({"quarantined": quarantined}).decode()
        status, _ = await self._call("PATCH", api_path(ns, "configmaps", name),
                                     {"data": {OVERLAY_KEY: doc}})
        return status


def api_path(namespace: str, resource: str, name: str | None = None) -> str:
    """``/api/v1/namespaces/<ns>/<resource>[/<name>]`` built only from validated names.

    The namespace and name may come from an event (a Falco alert's ``k8s.pod.name``): each must
    be a Kubernetes name, so no ``..``, ``/`` or percent-escape ever reaches the path. Raises
    ``ValueError`` otherwise; the caller logs the refused action.
    """
    if not is_namespace_name(namespace):
        raise ValueError(f"namespace {namespace!r} is not a Kubernetes namespace name")
    path = f"/api/v1/namespaces/{namespace}/{resource}"
    if name is None:
        return path
    if not is_object_name(name):
        raise ValueError(f"{resource} name {name!r} is not a Kubernetes object name")
    return f"{path}/{name}"


@dataclass(frozen=True)
class ResponseSettings:
    gateway_admin: tuple[str, ...] = ()  # http://host:admin_port of each gateway
    gateway_token_file: Path | None = None  # the gateway admin API's bearer token, if it has one
    overlay_file: Path | None = None  # the overlay the local gateway watches
    namespace: str = ""  # the agents' namespace (pods to label)
    selectors: Mapping[str, Mapping[str, str]] | None = None  # agent -> matchLabels
    attempts: int = 3
    backoff_s: float = 0.5


Step = Callable[[], Awaitable[int]]


class Responder:
    """Quarantine and release agents; keeps the quarantined set (from the store) current."""

    def __init__(self, settings: ResponseSettings, store: IncidentStore,
                 session: aiohttp.ClientSession, kube: KubeClient | None, *,
                 clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._s = settings
        self._store = store
        self._session = session
        self._kube = kube
        self._clock = clock
        self._sleep = sleep
        self.quarantined: set[str] = set(store.quarantined())

    async def quarantine(self, agent: str, incident: str | None = None,
                         pods: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
        """Cut ``agent`` off; ``pods`` (namespace, name) from the incident, else by selector."""
        self.quarantined.add(agent)
        results = [self._log(agent, "quarantine", "corral", True, {"incident": incident})]
        results += await self._gateway(agent, "quarantine", "PUT")
        labelled = await self._pods_for(agent, pods)
        for ns, pod in labelled:
            results.append(await self._act("label_pod", agent, f"pod/{ns}/{pod}",
                                           self._label(ns, pod, "true")))
        self._store.set_quarantine(agent, self._clock(), incident,
                                   [f"{ns}/{p}" for ns, p in labelled])
        return results

    async def reapply(self) -> list[dict[str, Any]]:
        """At start: make the gateway agree with the stored quarantine state (a gateway that
        restarted meanwhile, or an overlay file that was lost, would otherwise let a
        quarantined agent out while this side still reports it cut off)."""
        results = []
        if self._s.overlay_file is not None:
            path = str(self._s.overlay_file)
            results.append(await self._act("overlay_reapply", "*", path, self._overlay()))
        for agent in sorted(self.quarantined):
            for base in self._s.gateway_admin:
                for url in await replica_urls(base, f"/v1/quarantine/{quote(agent)}"):
                    results.append(await self._act("gateway_reapply", agent, url,
                                                   self._http("PUT", url)))
        return results

    async def release(self, agent: str) -> list[dict[str, Any]]:
        """Undo a quarantine: gateway back to the policy, labels removed from labelled pods."""
        record = self._store.quarantined().get(agent, {"pods": []})
        self.quarantined.discard(agent)
        results = [self._log(agent, "release", "corral", True, {"was": record})]
        results += await self._gateway(agent, "release", "DELETE")
        for ref in record["pods"]:
            ns, _, pod = ref.partition("/")
            results.append(await self._act("unlabel_pod", agent, f"pod/{ref}",
                                           self._label(ns, pod, None)))
        self._store.clear_quarantine(agent)
        return results

    async def _gateway(self, agent: str, action: str, method: str) -> list[dict[str, Any]]:
        results = []
        for base in self._s.gateway_admin:
            for url in await replica_urls(base, f"/v1/quarantine/{quote(agent)}"):
                results.append(await self._act(f"gateway_{action}", agent, url,
                                               self._http(method, url)))
        if self._s.overlay_file is not None:
            path = str(self._s.overlay_file)
            results.append(await self._act(f"overlay_{action}", agent, path, self._overlay()))
        if self._kube is not None and self._kube.cfg.overlay_configmap is not None:
            ns, name = self._kube.cfg.overlay_configmap
            results.append(await self._act(f"configmap_{action}", agent,
                                           f"configmap/{ns}/{name}", self._configmap()))
        return results

    async def _pods_for(self, agent: str,
                        pods: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
        if self._kube is None:
            return []
        if pods:  # from an event: only the agents' namespace is corral's to label
            own = [(ns, p) for ns, p in pods if not self._s.namespace or ns == self._s.namespace]
            for ns, p in sorted(set(pods) - set(own)):
                self._log(agent, "label_pod", f"pod/{ns}/{p}", False,
                          {"error": f"namespace {ns!r} is not the agents' namespace"})
            return own
        selector = (self._s.selectors or {}).get(agent)
        if not selector:
            return []
        try:
            return [(self._s.namespace, p) for p in
                    await self._kube.pods(self._s.namespace, selector)]
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            self._log(agent, "list_pods", self._s.namespace, False, {"error": str(exc)})
            return []

    def _http(self, method: str, url: str) -> Step:
        async def call() -> int:
            headers = {}
            if self._s.gateway_token_file is not None:  # re-read: a mounted Secret may rotate
                token = self._s.gateway_token_file.read_text().strip()
                headers["Authorization"] = f"Bearer {token}"
            async with self._session.request(method, url, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=5)) as r:
                await r.read()
                return r.status
        return call

    def _label(self, ns: str, pod: str, value: str | None) -> Step:
        kube = self._kube
        assert kube is not None

        async def call() -> int:
            return await kube.label_pod(ns, pod, value)
        return call

    def _overlay(self) -> Step:
        async def call() -> int:
            assert self._s.overlay_file is not None
            write_overlay(self._s.overlay_file, sorted(self.quarantined))
            return 200
        return call

    def _configmap(self) -> Step:
        kube = self._kube
        assert kube is not None

        async def call() -> int:
            return await kube.set_overlay(sorted(self.quarantined))
        return call

    async def _act(self, action: str, agent: str, target: str, step: Step) -> dict[str, Any]:
        """Run one step with retries; log it (ok or not) and return what happened."""
        detail: dict[str, Any] = {}
        for attempt in range(1, self._s.attempts + 1):
            try:
                status = await step()
            except ValueError as exc:  # a name that must never reach an API path: no retry
                detail = {"error": str(exc), "attempts": attempt}
                break
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                detail = {"error": f"{type(exc).__name__}: {exc}", "attempts": attempt}
            else:
                detail = {"status": status, "attempts": attempt}
                if 200 <= status < 300 or (action == "unlabel_pod" and status == 404):
                    return self._log(agent, action, target, True, detail)
                if status < 500 and status != 429:
                    break
            if attempt < self._s.attempts:
                await self._sleep(self._s.backoff_s * 2 ** (attempt - 1))
        return self._log(agent, action, target, False, detail)

    def _log(self, agent: str, action: str, target: str, ok: bool,
             detail: dict[str, Any]) -> dict[str, Any]:
        self._store.log_action(self._clock(), action, agent, target, ok=ok, detail=detail)
        log.log(logging.INFO if ok else logging.ERROR, "response %s agent=%s target=%s ok=%s %s",
                action, agent, target, ok, detail)
        return {"action": action, "agent": agent, "target": target, "ok": ok, **detail}


async def replica_urls(base: str, path: str) -> list[str]:
    """One URL per address the admin host resolves to: behind a headless Service every gateway
    replica is asked (a ClusterIP Service would reach one; the overlay ConfigMap then carries
    the change to the others). An IP literal or an unresolvable name is used as given."""
    parts = urlsplit(base.rstrip("/"))
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ipaddress.ip_address(host)
        return [base.rstrip("/") + path]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        return [base.rstrip("/") + path]
    addrs = sorted({str(i[4][0]) for i in infos})
    v4 = [a for a in addrs if ":" not in a]
    addrs = v4 or addrs  # dual stack: each replica once (and "localhost" is 127.0.0.1)
    if len(addrs) <= 1:
        return [base.rstrip("/") + path]
    return [f"{parts.scheme}://{f'[{a}]' if ':' in a else a}:{port}{path}" for a in addrs]


def write_overlay(path: Path, quarantined: list[str]) -> None:
    """Atomically replace the overlay file (write a temp file, rename over)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".overlay-")
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps({"quarantined": quarantined}) + b"\n")
    os.replace(tmp, path)
