"""Quarantine and release against real local servers: the gateway admin API over HTTP, and a
Kubernetes API stand-in over real TLS (trustme CA) that records each request exactly."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import orjson
import trustme
from aiohttp import web

from corral.control.app import ControlPlane
from corral.control.response import KubeConfig, ResponseSettings
from tests.control.conftest import Clock, PlaneFactory, body, falco_event, run


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.pods = ["research-a", "research-b"]

    def app(self) -> web.Application:
        async def any_request(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            self.requests.append({
                "method": request.method, "path": request.path_qs,
                "content_type": request.headers.get("Content-Type"),
                "auth": request.headers.get("Authorization"),
                "body": orjson.loads(raw) if raw else None})
            if request.method == "GET" and request.path.endswith("/pods"):
                return web.json_response({"kind": "PodList", "items": [
                    {"metadata": {"name": p}} for p in self.pods]})
            return web.json_response({"kind": "Status", "status": "Success"})

        a = web.Application()
        a.router.add_route("*", "/{tail:.*}", any_request)
        return a


async def _start(app: web.Application, ssl_ctx: ssl.SSLContext | None = None
                 ) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_ctx)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def _kube_files(tmp_path: Path) -> tuple[ssl.SSLContext, Path, Path]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    sa = tmp_path / "sa"
    sa.mkdir()
    ca.cert_pem.write_to_path(str(sa / "ca.crt"))
    (sa / "token").write_text("token-one\n")
    return server_ctx, sa / "token", sa / "ca.crt"


async def kube_plane(make_plane: PlaneFactory, tmp_path: Path
                      ) -> tuple[Recorder, web.AppRunner, ControlPlane]:
    """A started plane whose Kubernetes API is the recording stand-in over real TLS."""
    rec = Recorder()
    server_ctx, token, ca = _kube_files(tmp_path)
    runner, port = await _start(rec.app(), server_ctx)
    plane = make_plane(
        response=ResponseSettings(namespace="ai-workloads",
                                  selectors={"research": {"app": "research-agent"}}),
        kube=KubeConfig(f"https://127.0.0.1:{port}", token, ca))
    await plane.start(background=False)
    return rec, runner, plane


def test_quarantine_labels_the_pod_and_flips_the_gateway(make_plane: PlaneFactory, clock: Clock,
                                                         tmp_path: Path) -> None:
    async def go() -> None:
        kube_rec, gw_rec = Recorder(), Recorder()
        server_ctx, token, ca = _kube_files(tmp_path)
        kube_runner, kube_port = await _start(kube_rec.app(), server_ctx)
        gw_runner, gw_port = await _start(gw_rec.app())
        plane = make_plane(
            response=ResponseSettings(gateway_admin=(f"http://127.0.0.1:{gw_port}",),
                                      namespace="ai-workloads",
                                      selectors={"research": {"app": "research-agent"}}),
            kube=KubeConfig(f"https://127.0.0.1:{kube_port}", token, ca,
                            overlay_configmap=("egress-gateway", "corral-gateway-overlay")))
        await plane.start(background=False)
        plane.ingest_falco(body(falco_event(rule="Read service account token",
                                            priority="Critical", pod="research-7d9f")))
        plane.tick()
        for t in list(plane._tasks):
            await t
        assert [(r["method"], r["path"], r["body"]) for r in gw_rec.requests] == [
            ("PUT", "/v1/quarantine/research", None)]
        cm, pod = kube_rec.requests
        assert cm == {"method": "PATCH",
                      "path": "/api/v1/namespaces/egress-gateway/configmaps/corral-gateway-overlay",
                      "content_type": "application/merge-patch+json",
                      "auth": "Bearer token-one",
                      "body": {"data": {"overlay.json": '{"quarantined":["research"]}'}}}
        assert pod == {"method": "PATCH",
                       "path": "/api/v1/namespaces/ai-workloads/pods/research-7d9f",
                       "content_type": "application/merge-patch+json",
                       "auth": "Bearer token-one",
                       "body": {"metadata": {"labels": {"corral.dev/quarantine": "true"}}}}
        token.write_text("token-two")  # projected tokens rotate: re-read every call
        kube_rec.requests.clear()
        results = await plane.release("research")
        assert all(r["ok"] for r in results)
        assert gw_rec.requests[-1]["method"] == "DELETE"
        cm, pod = kube_rec.requests
        assert cm["body"] == {"data": {"overlay.json": '{"quarantined":[]}'}}
        assert pod["body"] == {"metadata": {"labels": {"corral.dev/quarantine": None}}}
        assert pod["auth"] == "Bearer token-two"
        logged = [(a["action"], a["ok"]) for a in plane.store.actions()][::-1]
        assert logged == [("quarantine", True), ("gateway_quarantine", True),
                          ("configmap_quarantine", True), ("label_pod", True),
                          ("release", True), ("gateway_release", True),
                          ("configmap_release", True), ("unlabel_pod", True)]
        await plane.aclose()
        await kube_runner.cleanup()
        await gw_runner.cleanup()
    run(go())


def test_manual_quarantine_without_pod_labels_every_pod_of_the_agent(
        make_plane: PlaneFactory, tmp_path: Path) -> None:
    async def go() -> None:
        rec, runner, plane = await kube_plane(make_plane, tmp_path)
        await plane.quarantine("research")
        assert [(r["method"], r["path"]) for r in rec.requests] == [
            ("GET", "/api/v1/namespaces/ai-workloads/pods?labelSelector=app%3Dresearch-agent"),
            ("PATCH", "/api/v1/namespaces/ai-workloads/pods/research-a"),
            ("PATCH", "/api/v1/namespaces/ai-workloads/pods/research-b")]
        assert plane.store.quarantined()["research"]["pods"] == [
            "ai-workloads/research-a", "ai-workloads/research-b"]
        await plane.aclose()
        await runner.cleanup()
    run(go())


def test_unreachable_gateway_is_retried_logged_and_not_fatal(make_plane: PlaneFactory,
                                                            clock: Clock) -> None:
    async def go() -> None:
        plane = make_plane(response=ResponseSettings(gateway_admin=("http://127.0.0.1:9",)))
        await plane.start(background=False)
        results = await plane.quarantine("coder")
        failed = [r for r in results if not r["ok"]]
        assert [r["action"] for r in failed] == ["gateway_quarantine"]
        assert failed[0]["attempts"] == 3 and clock.slept == [0.5, 1.0]
        assert "coder" in plane.store.quarantined()  # the intent is kept; release undoes it
        await plane.aclose()
    run(go())


def test_in_cluster_config_from_service_account(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("t")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = KubeConfig.in_cluster(env, sa)
    assert cfg is not None and cfg.api == "https://10.96.0.1:443"
    assert cfg.ca_file == sa / "ca.crt"
    assert KubeConfig.in_cluster({}, sa) is None
    v6 = KubeConfig.in_cluster({**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, sa)
    assert v6 is not None and v6.api == "https://[fd00::1]:443"


def test_admin_url_fans_out_to_every_replica_address(monkeypatch: Any) -> None:
    from corral.control.response import replica_urls

    async def go() -> None:
        loop = asyncio.get_running_loop()
        assert await replica_urls("http://127.0.0.1:9090", "/v1/q/a") == [
            "http://127.0.0.1:9090/v1/q/a"]
        assert await replica_urls("http://localhost:9090/", "/x") == [
            "http://localhost:9090/x"]  # one address per family: as given

        async def headless(host: str, port: int, **_: Any) -> list[Any]:
            assert host == "corral-gateway.egress-gateway.svc"
            v4 = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                  for ip in ("10.0.0.12", "10.0.0.11")]
            return [*v4, (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::b", port, 0, 0))]
        monkeypatch.setattr(loop, "getaddrinfo", headless)
        assert await replica_urls("http://corral-gateway.egress-gateway.svc:9090",
                                  "/v1/quarantine/research") == [
            "http://10.0.0.11:9090/v1/quarantine/research",
            "http://10.0.0.12:9090/v1/quarantine/research"]
    run(go())
