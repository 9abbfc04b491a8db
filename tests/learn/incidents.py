"""Issue 12's cases as a six-week fleet history, each next to a benign look-alike.

NOW = 2026-11-26T12:00Z, review window 7 days, history 42 days. Agents:

- planner (learn, 4 pods, works 08-17 UTC): a new benign-looking name, ``status-relay.net``,
  gets a request every 30 minutes, day and night, from one pod, with the daily upload rising
  from 0.14 to 1.5 MiB (beacon, one pod, growth, off-hours, bytes to a new destination).
  Look-alike: ``api.openai.com`` at random times of office hours from every pod.
- helper (learn, 2 pods, around the clock): new benign hosts on TLDs the fleet never saw
  (``api.mistral.ai``, ``huggingface.co``, ``www.who.int``) and ``api.cohere.ai`` at ~48
  independent requests a day (the beacon's rate, not its regularity): no flag, safe to allow.
  Falco: a compiler rule fires 30 times in quiet hours: an exception is suggested.
- etl (enforce, allows ``*.amazonaws.com``): 40 MiB up to a new regional S3 bucket
  ``exports.s3.eu-north-1.amazonaws.com`` (storage, upload); look-alike: a few KiB to
  ``bedrock-runtime.eu-north-1.amazonaws.com``.
- webbot (enforce): day -3, 02:00-04:59 UTC, 650 denied requests to 23 raw IPs in two /24s and
  a DNS tunnel through encoded names under ``t.relay-dns.com``; in the same hours curl trips
  corral's own process rule and an upstream-style rule 38 times each: neither may get an
  exception.
- reporter (learn, quiet for weeks: ready to enforce): a backup job reaches
  ``backup.example-corp.com`` every 14 days, last 8 days ago (before the window): the switch to
  enforce must keep it allowed.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.model import records as rec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAYS = 42

POLICY = """\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: incidents}
spec:
  namespace: ai-workloads
  registries: [registry.example.com/agents/]
  agents:
    - name: planner
      selector: {app: planner}
      egress:
        mode: learn
        allow:
          - api.openai.com
    - name: helper
      selector: {app: helper}
      egress:
        mode: learn
        allow:
          - api.openai.com
    - name: etl
      selector: {app: etl}
      egress:
        mode: enforce
        allow:
          - "*.amazonaws.com"
          - api.openai.com
    - name: webbot
      selector: {app: webbot}
      egress:
        mode: enforce
        allow:
          - en.wikipedia.org
      processes: [python3]
    - name: reporter
      selector: {app: reporter}
      egress:
        mode: learn
        allow:
          - api.openai.com
"""

PODS = {"planner": 4, "helper": 2, "etl": 2, "webbot": 3, "reporter": 2}
PERIODIC = "backup.example-corp.com"
BEACON = "status-relay.net"
BENIGN_NEW = ("api.mistral.ai", "huggingface.co", "www.who.int", "api.cohere.ai")
BUCKET = "exports.s3.eu-north-1.amazonaws.com"
BEDROCK = "bedrock-runtime.eu-north-1.amazonaws.com"
IPS = tuple(f"198.51.100.{i}" for i in range(10, 22)) + tuple(
    f"203.0.113.{i}" for i in range(40, 51))
TUNNEL = "t.relay-dns.com"
ATTACK_DAY = -3


def _day(day: int) -> datetime:
    return (NOW + timedelta(days=day)).replace(hour=0, minute=0, second=0, microsecond=0)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _line(  # noqa: PLR0917 - one access line: every field a generator varies
        agent: str, pod: int, host: str, when: datetime, up: int, decision: str,
        rnd: random.Random, *, rule: str | None = None, down: int | None = None
) -> dict[str, Any]:
    agents = sorted(PODS)
    return {
        rec.TIME: _stamp(when), rec.KIND: rec.KIND_ACCESS, rec.AGENT: agent,
        rec.CLIENT: f"10.30.{agents.index(agent)}.{10 + pod}:{rnd.randrange(30000, 60000)}",
        rec.METHOD: "CONNECT", rec.HOST: host, rec.PORT: 443, rec.PATH: None,
        rec.DECISION: decision,
        rec.REASON: "allowed_by_rule" if decision == "allow" else "not_in_allowlist",
        rec.RULE: rule, rec.RESOLVED: None, rec.SNI: host, rec.BYTES_UP: up,
        rec.BYTES_DOWN: up * 4 if down is None else down, rec.DURATION_MS: 30.0,
        rec.STATUS: 403 if decision == "deny" else 200, rec.POLICY_VERSION: "incidents-1",
    }


def _at(day: int, rnd: random.Random, first_hour: int = 0, last_hour: int = 23) -> datetime:
    start = _day(day) + timedelta(hours=first_hour)
    return start + timedelta(seconds=rnd.randrange((last_hour - first_hour + 1) * 3600))


def _steady(rnd: random.Random) -> Iterator[dict[str, Any]]:
    for day in range(-DAYS, 1):
        for _ in range(60):  # planner: office hours, every pod
            yield _line("planner", rnd.randrange(4), "api.openai.com", _at(day, rnd, 8, 17),
                        rnd.randrange(2_000, 9_000), "allow", rnd, rule="api.openai.com")
        for _ in range(80):  # helper: around the clock
            yield _line("helper", rnd.randrange(2), "api.openai.com", _at(day, rnd),
                        rnd.randrange(2_000, 9_000), "allow", rnd, rule="api.openai.com")
        for _ in range(40):
            yield _line("etl", rnd.randrange(2), "api.openai.com", _at(day, rnd),
                        rnd.randrange(2_000, 9_000), "allow", rnd, rule="api.openai.com")
        for _ in range(50):
            yield _line("webbot", rnd.randrange(3), "en.wikipedia.org", _at(day, rnd),
                        rnd.randrange(500, 2_000), "allow", rnd, rule="en.wikipedia.org")
        for _ in range(30):
            yield _line("reporter", rnd.randrange(2), "api.openai.com", _at(day, rnd),
                        rnd.randrange(2_000, 9_000), "allow", rnd, rule="api.openai.com")
        if day in {-36, -22, -8}:  # the fortnightly backup
            for _ in range(3):
                yield _line("reporter", 0, PERIODIC, _at(day, rnd, 1, 1), 200_000,
                            "would_deny", rnd)


def _beacon(rnd: random.Random) -> Iterator[dict[str, Any]]:
    """Every 30 min (+-1 min jitter) from pod 3, daily upload 0.14 -> 1.5 MiB over 6 days."""
    for i, day in enumerate(range(-6, 0)):
        daily = int((0.14 + (1.5 - 0.14) * i / 5) * (1 << 20))
        for slot in range(48):
            when = _day(day) + timedelta(minutes=30 * slot + 1 + rnd.uniform(-1, 1))
            yield _line("planner", 3, BEACON, when, daily // 48, "would_deny", rnd, down=300)


def _benign_new(rnd: random.Random) -> Iterator[dict[str, Any]]:
    for day in range(-5, 1):
        for host in BENIGN_NEW[:3]:
            for _ in range(6):
                yield _line("helper", rnd.randrange(2), host, _at(day, rnd), 1_500,
                            "would_deny", rnd)
    for day in range(-6, 0):  # the beacon's rate, at independent times
        for _ in range(48):
            yield _line("helper", rnd.randrange(2), BENIGN_NEW[3], _at(day, rnd), 800,
                        "would_deny", rnd)


def _storage(rnd: random.Random) -> Iterator[dict[str, Any]]:
    for day in range(-4, 0):
        for _ in range(40):  # 40 MiB over four days
            yield _line("etl", rnd.randrange(2), BUCKET, _at(day, rnd), (40 << 20) // 160,
                        "allow", rnd, rule="*.amazonaws.com", down=2_000)
        for _ in range(5):
            yield _line("etl", rnd.randrange(2), BEDROCK, _at(day, rnd), 3_000, "allow", rnd,
                        rule="*.amazonaws.com")


def _attack(rnd: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(650):
        yield _line("webbot", 1, IPS[i % len(IPS)], _at(ATTACK_DAY, rnd, 2, 4), 0, "deny", rnd)
    secret = rnd.randbytes(24 * 60)
    for i in range(60):
        label = base64.b32encode(secret[i * 24:(i + 1) * 24]).decode().rstrip("=").lower()
        yield _line("webbot", 1, f"{label}.{TUNNEL}", _at(ATTACK_DAY, rnd, 2, 4), 0, "deny",
                    rnd)


def access_records(seed: int = 12) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = [r for gen in (_steady, _beacon, _benign_new, _storage, _attack) for r in gen(rnd)
           if r[rec.TIME] <= _stamp(NOW)]
    rnd.shuffle(out)
    return out


def _event(rule: str, when: datetime, proc: str, app: str) -> dict[str, Any]:
    fields = {"proc.name": proc, "proc.pname": "python3", "proc.cmdline": f"{proc} -s",
              "container.image.repository": f"registry.example.com/agents/{app}",
              "k8s.ns.name": "ai-workloads", "k8s.pod.labels": f"app:{app}"}
    return {"output": f"{rule} ({proc})", "priority": "Warning", "rule": rule,
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z", "output_fields": fields,
            "tags": [], "source": "syscall", "hostname": "node-1"}


CURL_RULES = ("corral: webbot: unexpected process", "Outbound connection by curl")
QUIET_RULE = "Compiler run in container"


def falco_events(seed: int = 13) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = [_event(rule, _at(ATTACK_DAY, rnd, 2, 4), "curl", "webbot")
           for rule in CURL_RULES for _ in range(38)]
    # the compiler fires in helper's quiet hours: no denial, no risky request then
    out += [_event(QUIET_RULE, _at(-rnd.randrange(1, 6), rnd, 9, 11), "cc1", "helper")
            for _ in range(30)]
    return out
