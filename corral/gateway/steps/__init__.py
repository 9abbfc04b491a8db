"""Gateway features as small steps, run in ONE explicit order (``build_pipeline``).

Each step is a class with any of these hooks, all taking the flow:

- ``request(flow) -> Refusal | None | Awaitable[Refusal | None]`` before anything is dialled;
  a step returns an awaitable only when it must wait (a DNS miss), so a keep-alive request to a
  cached name runs every step synchronously, without a task;
- ``hello(flow, first_bytes) -> Refusal | None | MORE`` on the first bytes inside a tunnel;
- ``opened(flow) -> None`` once, when a tunnel (CONNECT past its SNI check, or a WebSocket
  after its 101) starts carrying bytes; then ``progress(flow) -> None`` every
  ``spec.gateway.log_progress_s`` while it stays open (the access log's open/progress lines);
- ``done(flow) -> None`` once, when the flow ends (accounting, metrics, the access line).

Order: identify (listener port -> agent) -> parse target -> decide -> rate/quota/tunnels ->
resolve + SSRF guard -> self guard -> [server dials the vetted address; a CONNECT is answered
200 first and dialled after the SNI check] -> SNI check -> [relay] -> account -> metrics -> log.
Limits run before resolution so that a throttled agent costs no DNS query, and before
``200 Connection established`` so a 429 can still be sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from corral.gateway.flow import Flow, Refusal
from corral.gateway.log import AccessLog
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.protocol.tls import Hello
from corral.gateway.ratelimit import Clock
from corral.gateway.resolver import Resolver
from corral.gateway.sharedlimits import LimitPlan
from corral.gateway.steps import (
    decide,
    identify,
    limits,
    observe,
    resolve,
    selfguard,
    sni,
    target,
)

Verdict = Refusal | None
RequestHook = Callable[[Flow], Verdict | Awaitable[Verdict]]
HelloHook = Callable[[Flow, bytes], Refusal | Hello | None]
DoneHook = Callable[[Flow], None]


@dataclass(frozen=True, slots=True)
class Context:
    """What steps need from the process: explicit, built once by ``app``."""

    resolver: Resolver
    metrics: GatewayMetrics
    log: AccessLog
    clock: Clock  # monotonic seconds for rate limits (tests inject a fake)
    wall: Clock  # epoch seconds for log timestamps
    own: selfguard.OwnAddresses = field(default_factory=selfguard.OwnAddresses)
    plan: LimitPlan = field(default_factory=LimitPlan)  # this process's share


class Pipeline:
    """The ordered steps with their hooks pre-collected (no per-request lookups)."""

    def __init__(self, steps: tuple[object, ...]) -> None:
        self.steps = steps
        self._request: tuple[RequestHook, ...] = tuple(
            s.request for s in steps if hasattr(s, "request"))
        self._hello: tuple[HelloHook, ...] = tuple(s.hello for s in steps if hasattr(s, "hello"))
        self._done: tuple[DoneHook, ...] = tuple(s.done for s in steps if hasattr(s, "done"))
        self._opened: tuple[DoneHook, ...] = tuple(
            s.opened for s in steps if hasattr(s, "opened"))
        self._progress: tuple[DoneHook, ...] = tuple(
            s.progress for s in steps if hasattr(s, "progress"))

    def request(self, flow: Flow) -> Verdict | Coroutine[Any, Any, Verdict]:
        """Run the request hooks; a coroutine to await when one of them has to wait."""
        for i, hook in enumerate(self._request):
            verdict = hook(flow)
            if verdict is None:
                continue
            if isinstance(verdict, Refusal):
                return verdict
            return self._rest(flow, verdict, i + 1)
        return None

    async def _rest(self, flow: Flow, pending: Awaitable[Verdict], start: int) -> Verdict:
        verdict = await pending
        if verdict is not None:
            return verdict
        for hook in self._request[start:]:
            result = hook(flow)
            if result is not None and not isinstance(result, Refusal):
                result = await result
            if result is not None:
                return result
        return None

    def hello(self, flow: Flow, data: bytes) -> Refusal | Hello | None:
        for hook in self._hello:
            verdict = hook(flow, data)
            if verdict is not None:
                return verdict
        return None

    def opened(self, flow: Flow) -> None:
        if flow.opened or flow.ended:
            return
        flow.opened = True
        for hook in self._opened:
            hook(flow)

    def progress(self, flow: Flow) -> None:
        if flow.opened and not flow.ended:
            for hook in self._progress:
                hook(flow)

    def done(self, flow: Flow) -> None:
        if flow.ended:
            return
        flow.ended = True
        for hook in self._done:
            hook(flow)


def build_pipeline(ctx: Context) -> Pipeline:
    """THE order of the gateway's steps."""
    book = limits.LimitBook(ctx.clock, ctx.plan)
    return Pipeline((
        identify.Identify(book),
        target.ParseTarget(),
        decide.Decide(),
        limits.Limits(ctx.metrics),
        resolve.ResolveGuard(ctx.resolver),
        selfguard.SelfGuard(ctx.own),
        sni.SniCheck(),
        limits.Release(ctx.metrics),
        observe.Metrics(ctx.metrics),
        observe.Log(ctx.log, ctx.wall),
    ))
