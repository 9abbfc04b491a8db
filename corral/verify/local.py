"""``corral verify --local`` and ``corral drill --local``: the checks and the drill in the lab.

Where it sits: under the CLI; opens one ``Lab`` (network namespaces, the user's policy in a real
gateway and control plane, a fake internet) and runs the exercises of
``corral.verify.exercises`` in it. verify is the short list the seed asks for, each turned into
a ``results.Check``; the drill is the whole catalogue, scored by ``corral.verify.drill``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from corral.model.policy import Policy
from corral.verify import drill, exercises, falcolab, targets
from corral.verify import results as r
from corral.verify.drill import ControlResult
from corral.verify.exercises import Ctx
from corral.verify.lab import PUBLIC, Lab
from corral.verify.results import Check


@contextmanager
def lab_context(policy: Policy, agent_name: str | None, *, keep: Path | None = None,
                with_control: bool = True) -> Iterator[Ctx]:
    """A running lab for the chosen agent; its work folder is removed unless ``keep`` is set."""
    agent = targets.pick_agent(policy, agent_name)
    workdir = keep or Path(tempfile.mkdtemp(prefix="corral-lab-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with Lab(policy, agent, workdir, with_control=with_control) as lab:
            yield Ctx(lab, policy, agent)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


_STATUS: dict[str, r.Status] = {"blocked": "passed", "detected": "passed", "missed": "failed",
                                "not_available": "not_available", "error": "error"}


def _check(name: str, expected: str, cr: ControlResult) -> Check:
    status = _STATUS[cr.result]
    basis = "" if cr.basis == "observed" else f" [{cr.basis}]"
    return Check(name, cr.control, expected, status, cr.evidence + basis)


def _allowed(ctx: Ctx) -> Check:
    ok = targets.allowed(ctx.agent)
    results, lines = ctx.attempt([{"id": "ok", "kind": "connect", "host": ok.host,
                                   "port": ok.port}])
    res = results.get("ok", {})
    line = exercises.line_for(lines, ok.host)
    proof = (exercises.line_text(line) if line else "no log line") + \
        f"; origin answered {res.get('origin_status')}"
    passed = res.get("outcome") == "reached" and line is not None and \
        line.get("decision") == "allow"
    exp = f"CONNECT {ok.authority} ({ok.why}) is allowed and reaches the destination"
    return (r.passed if passed else r.failed)("gateway-allows", "gateway", exp, proof)


def _denied(ctx: Ctx) -> Check:
    no = targets.denied(ctx.agent)
    cr = exercises.gateway_all_refused(ctx, [{"id": "no", "kind": "connect", "host": no.host,
                                              "port": no.port}])
    return _check("gateway-denies", f"CONNECT {no.authority} ({no.why}) gets a 403 with the "
                  "reason", cr)


def _private(ctx: Ctx) -> Check:
    cr = exercises.gateway_all_refused(ctx, [{"id": "p", "kind": "connect",
                                              "host": ctx.lab.names.private, "port": 443}])
    return _check("private-address-refused", f"an allowed name resolving to {ctx.lab.private} "
                  "is refused (SSRF guard)", cr)


def _metadata(ctx: Ctx) -> Check:
    gw = next(c for c in exercises.cloud_metadata(ctx) if c.control == "gateway")
    return _check("metadata-refused", "169.254.169.254, by address and by a name resolving to "
                  "it, is refused", gw)


def _privileged(ctx: Ctx) -> Check:
    pod = exercises.drill_pod(ctx, ctx.policy.spec.gateway.image)
    pod["spec"]["containers"][0]["securityContext"]["privileged"] = True
    return _check("privileged-pod-refused", "a privileged pod is refused by the compiled "
                  "admission policy", exercises.admission(ctx, pod, "privileged"))


def _process(ctx: Ctx) -> list[Check]:
    exp = "an unexpected process matches the agent's compiled Falco rule"
    why = falcolab.unavailable_reason()
    if why:
        falco = ControlResult("falco", "not_available", why)
    else:
        falco = exercises.falco_result(falcolab.replay(ctx.policy, ctx.agent,
                                                       "unexpected_process"))
    alert = exercises.falco_alert(ctx, "unexpected_process", "corral-drill", "python3")
    return [_check("unexpected-process-detected", exp, falco),
            _check("falco-alert-becomes-incident", "corral serve turns the Falco alert into an "
                   "incident", alert)]


VerifyStep = Callable[[Ctx], list[Check]]

STEPS: tuple[VerifyStep, ...] = (
    lambda c: [_check("direct-egress-blocked", f"a direct connection to {PUBLIC}:443 fails",
                      exercises.network_all_failed(c, [(PUBLIC, 443)]))],
    lambda c: [_check("gateway-port-only", "from the agent, only its own listener port on the "
                      "gateway answers", exercises.bypass_proxy(c)[0])],
    lambda c: [_allowed(c)],
    lambda c: [_denied(c)],
    lambda c: [_metadata(c)],
    lambda c: [_private(c)],
    lambda c: [_check("unapproved-image-refused", "a pod from an unapproved registry is "
                      "refused by the compiled admission policy",
                      exercises.unapproved_image(c)[0])],
    lambda c: [_privileged(c)],
    _process,
)


def verify_local(policy: Policy, *, agent: str | None = None, timeout_s: float = 120.0,
                 keep: Path | None = None) -> list[Check]:
    """Every local check; a step that breaks becomes an ``error`` check and the rest still run."""
    del timeout_s  # every step is bounded by the probe's own timeouts
    out: list[Check] = []
    with lab_context(policy, agent, keep=keep) as ctx:
        for step in STEPS:
            try:
                out.extend(step(ctx))
            except Exception as exc:  # report and go on: one broken step hides nothing else
                out.append(r.errored("step", "lab", "the step runs", f"{type(exc).__name__}: "
                                     f"{exc}"))
    return out


def drill_local(policy: Policy, *, agent: str | None = None, only: Iterable[str] | None = None,
                keep: Path | None = None) -> list[drill.Score]:
    with lab_context(policy, agent, keep=keep) as ctx:
        return drill.run_all(ctx, exercises.EXERCISES, only)
