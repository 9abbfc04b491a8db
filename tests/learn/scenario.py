"""A realistic six-week fleet history with known incidents, for the review tests.

Agents and what happens to them (NOW = 2026-11-26T12:00Z, review window 7 days):
- research (enforce): steady traffic with +-30% daily drift; ``old-api.example.com`` last used
  40 days ago (unused entry); day -2 a compromised burst: 300 MiB up to api.github.com (volume
  anomaly), tries pastebin.com and the raw IP 203.0.113.50 (denied, new, risky).
- analyst (enforce): uploads ~5 MiB/day to data.example-corp.com (heavy but normal: no anomaly);
  from day -4 tries api.anthropic.com (denied, new, benign: safe allow suggestion).
- coder (learn): new destinations in weeks 1-2 (crates.io, proxy.golang.org would_deny), then
  nothing new for 3 weeks: ready to enforce; Falco: ``cc1`` trips a compiler rule 190 times
  (exception suggested), shells of many kinds 30 times (no single pattern: no exception).
  research's ``sh`` trips corral's own process rule 25 times (corral's rule: never an exception).
- scraper (learn): slow exfiltration from day -6: ~40 requests/day of a few KiB each to
  ``<base32 chunk>.t.cdn-sync.xyz`` (encoded labels): risky, not ready to enforce.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.model import records as rec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAYS = 45

POLICY = """\
# corral policy for the review tests: comments must survive --apply.
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata:
  name: prod                      # the policy name
spec:
  namespace: ai-workloads
  agents:
    # Research agent, in production.
    - name: research
      selector: {app: research-agent}   # matchLabels
      egress:
        mode: enforce             # deny what is not allowed
        allow:
          - api.openai.com        # the model API
          - "*.weather.gov"       # forecasts
          - en.wikipedia.org
          - api.github.com
          - old-api.example.com   # retired upstream
        deny:
          - "*.pastebin.com"      # deny beats allow
    - name: analyst
      selector: {app: analyst}
      egress:
        mode: enforce
        allow:
          - api.openai.com
          - data.example-corp.com # uploads reports here
    # Coding agent, still being profiled.
    - name: coder
      selector: {app: coding-agent}
      egress:
        mode: learn               # everything allowed, would_deny logged
        allow:
          - pypi.org
          - files.pythonhosted.org
          - registry.npmjs.org
          - github.com
      processes: [python3, pip, git]
    - name: scraper
      selector: {app: scraper}
      egress:
        mode: learn
        allow:
          - en.wikipedia.org
          - "*.wikimedia.org"
"""

# agent -> (host, port, requests/day, bytes up/day, decision, rule, first day offset)
_Steady = tuple[str, str, int, int, int, str, str | None, int]
STEADY: tuple[_Steady, ...] = (
    ("research", "api.openai.com", 443, 60, 400_000, "allow", "api.openai.com", -DAYS),
    ("research", "forecast.weather.gov", 443, 20, 20_000, "allow", "*.weather.gov", -DAYS),
    ("research", "alerts.weather.gov", 443, 10, 8_000, "allow", "*.weather.gov", -30),
    ("research", "en.wikipedia.org", 443, 30, 30_000, "allow", "en.wikipedia.org", -DAYS),
    ("research", "api.github.com", 443, 25, 200_000, "allow", "api.github.com", -DAYS),
    ("analyst", "api.openai.com", 443, 40, 300_000, "allow", "api.openai.com", -DAYS),
    ("analyst", "data.example-corp.com", 443, 12, 5_000_000, "allow", "data.example-corp.com",
     -DAYS),
    ("coder", "pypi.org", 443, 50, 60_000, "allow", "pypi.org", -DAYS),
    ("coder", "files.pythonhosted.org", 443, 80, 90_000, "allow", "files.pythonhosted.org",
     -DAYS),
    ("coder", "registry.npmjs.org", 443, 30, 30_000, "allow", "registry.npmjs.org", -DAYS),
    ("coder", "github.com", 443, 20, 150_000, "allow", "github.com", -DAYS),
    ("coder", "crates.io", 443, 15, 10_000, "would_deny", None, -38),
    ("coder", "proxy.golang.org", 443, 10, 8_000, "would_deny", None, -33),
    ("scraper", "en.wikipedia.org", 443, 200, 150_000, "allow", "en.wikipedia.org", -DAYS),
    ("scraper", "upload.wikimedia.org", 443, 100, 50_000, "allow", "*.wikimedia.org", -DAYS),
)

PODS = {"research": 3, "analyst": 2, "coder": 2, "scraper": 4}
FALCO_LABELS = {"coder": "coding-agent"}


def _time(day: int, rnd: random.Random) -> datetime:
    start = (NOW - timedelta(days=-day)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start + timedelta(seconds=rnd.randrange(1, 86_000))


def _record(  # noqa: PLR0917 - a record builder reads best with positional fields
        agent: str, host: str, port: int, when: datetime, up: int, decision: str,
        rule: str | None, rnd: random.Random, reason: str = "") -> dict[str, Any]:
    ip = f"10.20.{sorted(PODS).index(agent)}.{rnd.randrange(PODS[agent]) + 10}"
    return {
        rec.TIME: when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", rec.KIND: rec.KIND_ACCESS,
        rec.AGENT: agent, rec.CLIENT: f"{ip}:{rnd.randrange(30000, 60000)}",
        rec.METHOD: "CONNECT", rec.HOST: host, rec.PORT: port, rec.PATH: None,
        rec.DECISION: decision,
        rec.REASON: reason or ("allowed_by_rule" if decision == "allow" else "not_in_allowlist"),
        rec.RULE: rule, rec.RESOLVED: "198.51.100.7:443", rec.SNI: host, rec.BYTES_UP: up,
        rec.BYTES_DOWN: up * 8, rec.DURATION_MS: 42.0, rec.STATUS: 200 if decision != "deny"
        else 403, rec.POLICY_VERSION: "prod-1",
    }


def _spread(total: int, n: int, rnd: random.Random) -> list[int]:
    """``total`` bytes over ``n`` requests, each a little different."""
    weights = [rnd.uniform(0.5, 1.5) for _ in range(n)]
    scale = total / sum(weights)
    return [max(1, int(w * scale)) for w in weights]


def _steady(rnd: random.Random) -> Iterator[dict[str, Any]]:
    for agent, host, port, per_day, up, decision, rule, first in STEADY:
        for day in range(first, 1):
            if day == 0 and _time(day, rnd) > NOW:
                continue
            drift = rnd.uniform(0.7, 1.3)
            n = max(1, int(per_day * rnd.uniform(0.7, 1.3)))
            for b in _spread(int(up * drift), n, rnd):
                yield _record(agent, host, port, _time(day, rnd), b, decision, rule, rnd)


def _incidents(rnd: random.Random) -> Iterator[dict[str, Any]]:
    # retired upstream, last used 40 days ago
    for day in (-45, -44, -41, -40):
        yield _record("research", "old-api.example.com", 443, _time(day, rnd), 500, "allow",
                      "old-api.example.com", rnd)
    # compromised research agent, day -2: burst up an allowed API, attempts to paste and an IP
    for b in _spread(300 << 20, 30, rnd):
        yield _record("research", "api.github.com", 443, _time(-2, rnd), b, "allow",
                      "api.github.com", rnd)
    for _ in range(6):
        yield _record("research", "pastebin.com", 443, _time(-2, rnd), 0, "deny", None, rnd)
        yield _record("research", "203.0.113.50", 443, _time(-2, rnd), 0, "deny", None, rnd,
                      reason="ip_literal")
    # analyst starts needing another model API
    for day in range(-4, 1):
        for _ in range(5):
            yield _record("analyst", "api.anthropic.com", 443, _time(day, rnd), 0, "deny", None,
                          rnd)
    # coder's early discovery of new destinations (weeks 1-2), all allowed in learn mode
    for day, host in ((-44, "static.crates.io"), (-36, "sum.golang.org")):
        for _ in range(4):
            yield _record("coder", host, 443, _time(day, rnd), 2_000, "would_deny", None, rnd)
    # scraper's slow exfiltration through encoded subdomains of a new domain
    secret = rnd.randbytes(40 * 7 * 24)
    chunk = 0
    for day in range(-6, 1):
        for _ in range(40):
            label = base64.b32encode(secret[chunk * 24:(chunk + 1) * 24]).decode().lower()
            chunk += 1
            host = f"{label.rstrip('=')}.t.cdn-sync.xyz"
            yield _record("scraper", host, 443, _time(day, rnd), rnd.randrange(2_000, 4_000),
                          "would_deny", None, rnd)


def access_records(seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = [r for r in (*_steady(rnd), *_incidents(rnd)) if r[rec.TIME] <= _stamp(NOW)]
    rnd.shuffle(out)  # logs from several gateway replicas interleave
    return out


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _falco(  # noqa: PLR0917 - an event builder reads best with positional fields
        rule: str, when: datetime, proc: str, parent: str, labels: str | None,
        image: str = "registry.example.com/agents/coder") -> dict[str, Any]:
    fields: dict[str, Any] = {"proc.name": proc, "proc.pname": parent,
                              "proc.cmdline": f"{proc} -x", "container.image.repository": image,
                              "k8s.ns.name": "ai-workloads", "k8s.pod.name": "coder-7d9f-abcde"}
    if labels is not None:
        fields["k8s.pod.labels"] = labels
    return {"output": f"{rule} ({proc})", "priority": "Warning", "rule": rule,
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z", "output_fields": fields,
            "tags": ["corral"], "source": "syscall", "hostname": "node-1"}


def falco_events(seed: int = 11) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(200):  # 95% one benign pattern: a compiler during pip builds
        proc, parent = ("cc1", "gcc") if i % 20 else ("sh", "pip")
        out.append(_falco("Compiler run in container", _time(-rnd.randrange(0, 6), rnd),
                          proc, parent, f"app:{FALCO_LABELS['coder']}"))
    for _ in range(25):  # one pattern, but corral's own rule: the policy decides, not Falco
        out.append(_falco("corral: research: unexpected process", _time(-3, rnd), "sh",
                          "python3", None, "registry.example.com/agents/research"))
    shells = ("bash", "sh", "zsh", "dash", "ash", "fish")
    for i in range(30):  # attributed by pod labels, no single pattern
        out.append(_falco("Terminal shell in container", _time(-rnd.randrange(0, 6), rnd),
                          shells[i % len(shells)], "runc", f"app:{FALCO_LABELS['coder']},tier:x"))
    for _ in range(3):  # research: rare, below the noise threshold
        out.append(_falco("corral: research: unexpected process", _time(-3, rnd), "curl", "sh",
                          None, "registry.example.com/agents/research"))
    return [e for e in out if e["time"] <= _stamp(NOW)]
