"""``corral verify --context CTX``: the seed's three checks, done for the user in a real cluster.

Where it sits: under the CLI; drives ``kubectl`` (argv from ``corral.verify.kubectl``) through a
``Runner`` and reports ``results.Check`` values. Nothing here parses kubectl output itself.

1. network: a short-lived pod with the agent's labels runs the probe: a direct connection to an
   allowed destination must fail (NetworkPolicy), CONNECT to it through the agent's gateway port
   must work, and CONNECT to a denied one must get the gateway's 403;
2. admission: a pod from an unapproved registry, and a privileged pod, are created with
   ``--dry-run=server`` and must be refused (nothing is persisted, nothing to clean up);
3. runtime: an unexpected process in a test agent pod must reach ``corral serve`` as a Falco event
   (needs ``--control URL``; without it the check says so and does not pass).

Every pod carries ``corral.dev/verify=<run id>`` and is deleted when its check ends, also on
failure; every wait is bounded by the options' timeout, on an injectable clock.
"""

from __future__ import annotations

import functools
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral.compile.output import Manifest
from corral.compile.render import render_all
from corral.model.images import image_admitted
from corral.model.policy import Agent, Policy
from corral.verify import control_client, probe, targets
from corral.verify import kubectl as kc
from corral.verify import results as r
from corral.verify.results import Check

DEFAULT_UNAPPROVED = "docker.io/library/busybox:1.36"


@dataclass(frozen=True, slots=True)
class Completed:
    code: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], *, stdin: str | None, timeout: float) -> Completed:
        ...


def subprocess_runner(argv: Sequence[str], *, stdin: str | None, timeout: float) -> Completed:
    """Run kubectl for real; a hung call becomes exit code 124 with a clear stderr."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"{argv[0]}: no answer within {timeout:g}s")
    except FileNotFoundError:
        return Completed(127, "", f"{argv[0]}: not found (install kubectl or pass --kubectl)")
    return Completed(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Options:
    context: str
    agent: str | None = None
    image: str | None = None  # test pod image; default: the gateway image (approved, has Python)
    unapproved_image: str = DEFAULT_UNAPPROVED
    control_url: str | None = None
    timeout_s: float = 120.0
    poll_s: float = 2.0
    kubectl: str = "kubectl"
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))


class EventFinder(Protocol):
    def __call__(self, base_url: str, namespace: str, pod: str, since: float,
                 rule: str | None = None) -> str | None:
        ...


@dataclass(frozen=True)
class Env:
    """The outside world, injectable: kubectl, the clock, and the control-plane lookup."""

    run: Runner = subprocess_runner
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    # evidence of a Falco event of the pod at corral serve (of the rule, if given), or None
    find_event: EventFinder | None = None


def default_env(control_token: str | None = None) -> Env:
    """kubectl for real, the real clock, and corral serve's incident API (read with its admin
    token)."""
    return Env(find_event=functools.partial(control_client.find_event, token=control_token))


class ClusterError(RuntimeError):
    """kubectl could not do what a check needs; the message quotes it."""


def gateway_url(policy: Policy, agent: Agent) -> str:
    """The agent's listener as a cluster-DNS URL, from the Service corral renders."""
    port = policy.spec.listener_ports()[agent.name]
    for files in render_all(policy, only={"gateway"}).values():
        for f in files.values():
            if not isinstance(f, Manifest):
                continue
            for o in f.objects:
                if o.get("kind") == "Service":
                    m = o["metadata"]
                    return f"http://{m['name']}.{m['namespace']}.svc.cluster.local:{port}"
    raise ClusterError("the rendered gateway has no Service")


@dataclass
class Session:
    policy: Policy
    opts: Options
    env: Env
    k: kc.Kubectl = field(init=False)

    def __post_init__(self) -> None:
        self.k = kc.Kubectl(self.opts.context, self.opts.kubectl)

    @property
    def ns(self) -> str:
        return self.policy.spec.namespace

    @property
    def image(self) -> str:
        return self.opts.image or self.policy.spec.gateway.image

    def call(self, argv: list[str], stdin: str | None = None) -> Completed:
        return self.env.run(argv, stdin=stdin, timeout=min(self.opts.timeout_s, 60.0))

    def must(self, argv: list[str], stdin: str | None = None) -> Completed:
        done = self.call(argv, stdin)
        if done.code != 0:
            why = kc.cluster_unreachable(done.stderr) or done.stderr.strip()[:500]
            raise ClusterError(f"kubectl {' '.join(argv[5:7])}: {why}")
        return done

    def pod_name(self, what: str) -> str:
        return f"corral-verify-{what}-{self.opts.run_id}"

    @contextmanager
    def pod(self, manifest: dict[str, Any]) -> Iterator[str]:
        name = str(manifest["metadata"]["name"])
        self.must(self.k.create(), json.dumps(manifest))
        try:
            yield name
        finally:
            self.call(self.k.delete_pod(self.ns, name))

    def wait(self, name: str, done: Callable[[kc.PodState], bool]) -> kc.PodState:
        deadline = self.env.monotonic() + self.opts.timeout_s
        while True:
            state = kc.parse_pod(self.must(self.k.get_pod(self.ns, name)).stdout)
            if done(state) or state.finished:
                return state
            if state.stuck:
                raise ClusterError(f"pod {name} cannot start: {state.waiting_reason}: "
                                   f"{state.message}")
            if self.env.monotonic() > deadline:
                raise ClusterError(f"pod {name} still {state.phase} after "
                                   f"{self.opts.timeout_s:g}s")
            self.env.sleep(self.opts.poll_s)


# -- 1. network ----------------------------------------------------------------------------------

def network_plan(policy: Policy, agent: Agent) -> dict[str, Any]:
    ok, no = targets.allowed(agent), targets.denied(agent)
    return {"proxy": gateway_url(policy, agent), "timeout": 5, "attempts": [
        {"id": "direct", "kind": "direct", "host": ok.host, "port": ok.port},
        {"id": "gateway-allowed", "kind": "connect", "host": ok.host, "port": ok.port},
        {"id": "gateway-denied", "kind": "connect", "host": no.host, "port": no.port},
    ]}


def judge_network(res: dict[str, probe.Result], plan: dict[str, Any]) -> list[Check]:
    direct, allowed, denied = (res.get(i, {"outcome": "missing"}) for i in
                               ("direct", "gateway-allowed", "gateway-denied"))
    a = plan["attempts"]
    out = []
    exp = f"a direct connection to {a[0]['host']}:{a[0]['port']} fails"
    out.append(r.passed("direct-egress-blocked", "network-policy", exp, _probe_text(direct))
               if direct["outcome"] not in ("connected", "missing")
               else r.failed("direct-egress-blocked", "network-policy", exp, _probe_text(direct)))
    exp = f"CONNECT {a[1]['host']}:{a[1]['port']} through the gateway succeeds"
    ok = allowed["outcome"] in ("reached", "tunnel_closed") and allowed.get("status") == 200
    out.append((r.passed if ok else r.failed)("gateway-allows", "gateway", exp,
                                              _probe_text(allowed)))
    exp = f"CONNECT {a[2]['host']}:{a[2]['port']} gets the gateway's 403 with a reason"
    ok = denied["outcome"] == "refused" and denied.get("status") == 403 and denied.get("reason")
    out.append((r.passed if ok else r.failed)("gateway-denies", "gateway", exp,
                                              _probe_text(denied)))
    return out


def _probe_text(res: probe.Result) -> str:
    keys = ("outcome", "status", "reason", "body", "error")
    return " ".join(f"{k}={res[k]}" for k in keys if res.get(k) not in (None, ""))


def run_probe_pod(s: Session, agent: Agent, plan: dict[str, Any],
                  what: str) -> dict[str, probe.Result]:
    """Run the probe with ``plan`` in a test pod of ``agent``; its results by attempt id."""
    manifest = kc.test_pod(s.policy, agent, name=s.pod_name(what), run_id=s.opts.run_id,
                           image=s.image, command=kc.probe_command([json.dumps(plan)]))
    with s.pod(manifest) as name:
        state = s.wait(name, lambda st: st.finished)
        logs = s.must(s.k.logs(s.ns, name)).stdout
    if state.phase != "Succeeded":
        raise ClusterError(f"probe pod ended {state.phase} (exit {state.exit_code}): {logs[-300:]}")
    return probe.parse_results(logs)


def check_network(s: Session, agent: Agent) -> list[Check]:
    plan = network_plan(s.policy, agent)
    return judge_network(run_probe_pod(s, agent, plan, "net"), plan)


# -- 2. admission --------------------------------------------------------------------------------

def judge_refusal(name: str, expected: str, done: Completed, *,
                  pod_security_counts: bool) -> Check:
    control = "admission"
    if done.code == 0:
        return r.failed(name, control, expected, f"admitted: {done.stdout.strip()}")
    refusal = kc.parse_refusal(done.stderr)
    if refusal is None:
        why = kc.cluster_unreachable(done.stderr) or done.stderr.strip()[:300]
        return r.errored(name, control, expected, f"not an admission refusal: {why}")
    if refusal.kind == "pod-security" and not pod_security_counts:
        return r.errored(name, "pod-security", expected,
                         "Pod Security refused the test pod before corral's admission policy "
                         f"could decide: {refusal.message}")
    return r.passed(name, "pod-security" if refusal.kind == "pod-security" else control,
                    expected, f"{refusal.kind} {refusal.by}: {refusal.message}")


def check_admission(s: Session, agent: Agent) -> list[Check]:
    image = s.opts.unapproved_image
    if image_admitted(image, s.policy.spec.registries):
        return [r.errored("unapproved-image-refused", "admission", "",
                          f"{image} is inside spec.registries; pass --unapproved-image")]
    bad = kc.test_pod(s.policy, agent, name=s.pod_name("image"), run_id=s.opts.run_id,
                      image=image, command=kc.sleeper_command(5))
    exp = f"a pod running {image} is refused by admission"
    out = [judge_refusal("unapproved-image-refused", exp,
                         s.call(s.k.create_dry_run(), json.dumps(bad)),
                         pod_security_counts=False)]
    priv = kc.test_pod(s.policy, agent, name=s.pod_name("priv"), run_id=s.opts.run_id,
                       image=s.image, command=kc.sleeper_command(5))
    priv["spec"]["containers"][0]["securityContext"]["privileged"] = True
    exp = "a privileged pod is refused by admission (or Pod Security)"
    out.append(judge_refusal("privileged-pod-refused", exp,
                             s.call(s.k.create_dry_run(), json.dumps(priv)),
                             pod_security_counts=True))
    return out


# -- 3. runtime ----------------------------------------------------------------------------------

def check_runtime(s: Session, agent: Agent) -> list[Check]:
    name = "unexpected-process-detected"
    exp = "an unexpected process in an agent pod reaches corral serve as a Falco event"
    if not s.opts.control_url:
        return [r.unavailable(name, "falco", exp, "pass --control URL of corral serve (e.g. "
                              "through kubectl port-forward) to check that Falco events arrive")]
    if s.env.find_event is None:
        return [r.unavailable(name, "falco", exp, "this build has no client for corral serve's "
                              "event query API")]
    manifest = kc.test_pod(s.policy, agent, name=s.pod_name("proc"), run_id=s.opts.run_id,
                           image=s.image, command=kc.sleeper_command(int(s.opts.timeout_s)))
    with s.pod(manifest) as pod:
        s.wait(pod, lambda st: st.phase == "Running")
        since = time.time()
        s.call(s.k.exec(s.ns, pod, kc.unexpected_process_command()))
        deadline = s.env.monotonic() + s.opts.timeout_s
        while s.env.monotonic() <= deadline:
            try:
                evidence = s.env.find_event(s.opts.control_url, s.ns, pod, since)
            except control_client.ControlError as exc:
                return [r.errored(name, "falco", exp, str(exc))]
            if evidence:
                return [r.passed(name, "falco", exp, evidence)]
            s.env.sleep(s.opts.poll_s)
    return [r.failed(name, "falco", exp, f"no Falco event for pod {pod} reached "
                     f"{s.opts.control_url} within {s.opts.timeout_s:g}s")]


CHECKS: tuple[tuple[str, Callable[[Session, Agent], list[Check]]], ...] = (
    ("network", check_network), ("admission", check_admission), ("runtime", check_runtime),
)


def verify_cluster(policy: Policy, opts: Options, env: Env | None = None) -> list[Check]:
    """Run every check; a check that breaks becomes an ``error`` result, the others still run.
    Ends with a label-based delete of anything this run created."""
    s = Session(policy, opts, env or Env())
    agent = targets.pick_agent(policy, opts.agent)
    out: list[Check] = []
    try:
        for group, fn in CHECKS:
            try:
                out.extend(fn(s, agent))
            except (ClusterError, kc.ParseError, targets.NoTarget) as exc:
                out.append(r.errored(group, group, f"the {group} checks run", str(exc)))
    finally:
        s.call(s.k.delete_run(s.ns, opts.run_id))
    return out
