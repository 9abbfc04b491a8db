"""Control-plane ingest benchmark: Falco alerts, one HTTP POST each over keep-alive (as Falco's
http_output sends them), through enrichment, dedup, grouping, the behaviour store and a
disk-queued Elasticsearch-bulk sink that receives every event; the sink is killed during the
load and restarted, then every accepted event must arrive exactly once.

    python bench/control/ingest.py --duration 60 --outage 20 --connections 16

Prints the numbers and one JSON line; exit 1 when an event was lost or duplicated.
Needs ``wrk`` (Debian package). Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POLICY = """\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {{name: bench}}
spec:
  namespace: ai-workloads
  registries: [registry.example.com/agents/]
  agents:
    - name: research
      selector: {{app: research-agent}}
      egress: {{allow: [api.openai.com]}}
    - name: coder
      selector: {{app: coding-agent}}
      egress: {{allow: [pypi.org]}}
  response:
    quarantine: {{enabled: false}}
    incidents: {{window_s: {window}}}
    sinks:
{sinks}"""
EVENTS_SINK = """\
      - {{name: siem, type: elasticsearch, url: "http://127.0.0.1:{sink}", send: events,
         batch: 500, backoff_s: 0.2, backoff_max_s: 2, route: {{min_severity: debug}}}}
"""
INCIDENT_SINK = """\
      - {{name: hook, type: webhook, url: "http://127.0.0.1:{sink}/hook",
         backoff_s: 0.2, backoff_max_s: 2, route: {{min_severity: debug}}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# serve runs with both credentials, as in a cluster: wrk posts with the ingest token
# (falco_post.lua reads CORRAL_INGEST_TOKEN), the bench reads the API with the admin token.
INGEST_TOKEN = "bench-ingest-" + os.urandom(12).hex()
ADMIN_TOKEN = "bench-admin-" + os.urandom(12).hex()


def get(url: str, timeout: float = 5) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return bytes(r.read())


def wait_up(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            get(url, 1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up in {seconds}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def histogram_quantile(text: str, name: str, q: float) -> float | None:
    buckets = [(float(le), float(v)) for le, v in
               re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M)]
    if not buckets:
        return None
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return None


class Receiver:
    def __init__(self, port: int, work: Path) -> None:
        self.port, self.work = port, work
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "receiver.py"), "--port", str(self.port),
             "--ids", str(self.work / "ids.txt"), "--hooks", str(self.work / "hooks.txt")],
            stdout=subprocess.DEVNULL, stderr=(self.work / "receiver.log").open("ab"))
        time.sleep(1.0)  # aiohttp binds within a second; the sink retries anyway

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def sample_sinks(base: str, stop: threading.Event, out: list[dict[str, Any]]) -> None:
    while not stop.wait(1.0):
        with contextlib.suppress(OSError):
            out.append({"t": time.time(), "sinks": json.loads(get(base + "/v1/sinks"))["sinks"]})


def parse_wrk(text: str) -> dict[str, Any]:
    def ms(v: str, unit: str) -> float:
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    lat = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)$", text, re.M)}
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"requests": total, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
            "p50_ms": lat.get("50"), "p90_ms": lat.get("90"), "p99_ms": lat.get("99"),
            "socket_errors": errors.group(1) if errors else None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    sink_port, port = free_port(), free_port()
    sinks = (EVENTS_SINK if args.events_sink else "") + INCIDENT_SINK
    (work / "corral.yaml").write_text(POLICY.format(sinks=sinks.format(sink=sink_port),
                                                    window=args.window))
    (work / "ingest.token").write_text(INGEST_TOKEN)
    (work / "admin.token").write_text(ADMIN_TOKEN)
    receiver = Receiver(sink_port, work)
    receiver.start()
    serve = subprocess.Popen(
        [sys.executable, "-m", "corral", "serve", "-f", str(work / "corral.yaml"),
         "--listen", f"127.0.0.1:{port}", "--state", str(work / "state"),
         "--log-level", "error", *([] if args.aggregates else ["--no-aggregates"]),
         "--ingest-token-file", str(work / "ingest.token"),
         "--admin-token-file", str(work / "admin.token")],
        stdout=subprocess.DEVNULL, stderr=(work / "serve.log").open("wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(base + "/healthz")
        samples: list[dict[str, Any]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_sinks, args=(base, stop, samples), daemon=True)
        sampler.start()
        cpu0, t0 = cpu_seconds(serve.pid), time.monotonic()
        outage = threading.Timer(args.outage_at, receiver.kill) if args.outage else None
        back = threading.Timer(args.outage_at + args.outage, receiver.start) \
            if args.outage else None
        for t in (outage, back):
            if t is not None:
                t.start()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk = subprocess.run(
            ["wrk", "-t", str(args.threads), "-c", str(args.connections),
             "-d", f"{args.duration}s", "--latency", "-s", str(HERE / "falco_post.lua"), base],
            capture_output=True, text=True, timeout=args.duration + 60, check=True,
            env={**os.environ, "CORRAL_INGEST_TOKEN": INGEST_TOKEN})
        load_s, cpu_s = time.monotonic() - t0, cpu_seconds(serve.pid) - cpu0
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_cpu = (children1.ru_utime + children1.ru_stime
                   - children0.ru_utime - children0.ru_stime)
        for t in (outage, back):
            if t is not None:
                t.join()
        drained = wait_closed(base, args.drain_timeout) and \
            wait_drained(base, args.drain_timeout)
        stop.set()
        metrics = get(base + "/metrics").decode()
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        receiver.kill()
    ids_file = work / "ids.txt"
    ids = ids_file.read_bytes().split() if ids_file.exists() else []
    conflicts_file = ids_file.with_suffix(".409")
    conflicts = conflicts_file.read_bytes().split() if conflicts_file.exists() else []
    result = parse_wrk(wrk.stdout)
    result["incidents"] = incident_accounting(work / "hooks.txt")
    accepted = int(metric(metrics, 'corral_control_events_total{source="falco"}'))
    max_queued = {name: max((s["queued"] for x in samples for s in x["sinks"]
                             if s["name"] == name), default=0) for name in ("siem", "hook")}
    result.update({
        "accepted": accepted, "delivered": len(ids), "unique_delivered": len(set(ids)),
        "lost": accepted - len(set(ids)), "duplicates": len(ids) - len(set(ids)),
        "redelivered_409": len(conflicts),
        "drained": drained, "max_queued_during_outage": max_queued,
        "serve_cpu_s": round(cpu_s, 2), "wrk_cpu_s": round(wrk_cpu, 2), "load_s": round(load_s, 1),
        "cpu_us_per_event": round(cpu_s / max(accepted, 1) * 1e6, 1),
        "server_p99_le_s": histogram_quantile(metrics, "corral_control_ingest_seconds", 0.99),
        "incidents_opened": int(sum(float(v) for v in re.findall(
            r"^corral_control_incidents_opened_total\{[^}]*\} (\S+)$", metrics, re.M))),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_after": os.getloadavg()},
        "config": vars(args), "work": str(work),
    })
    return result


def wait_closed(base: str, seconds: float) -> bool:
    """After the load, every incident closes once its window passes (final counts sent)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not json.loads(get(base + "/v1/incidents?status=open&limit=1"))["incidents"]:
            return True
        time.sleep(0.5)
    return False


def incident_accounting(path: Path) -> dict[str, int]:
    """Sum of final counts of closed incidents as the webhook received them (by key: a
    redelivered notice counts once)."""
    notices = {}
    if path.exists():
        for line in path.read_bytes().splitlines():
            n = json.loads(line)
            notices[n["key"]] = n
    closed = [n for n in notices.values() if n["kind"] == "closed" and n["status"] == "closed"]
    return {"notices": len(notices), "closed_incidents": len(closed),
            "events_in_closed_incidents": sum(n["count"] for n in closed)}


def wait_drained(base: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sinks = json.loads(get(base + "/v1/sinks"))["sinks"]
        if all(s["queued"] == 0 for s in sinks):
            time.sleep(1.5)  # the last drain tick
            if all(s["queued"] == 0 for s in json.loads(get(base + "/v1/sinks"))["sinks"]):
                return True
        time.sleep(0.5)
    return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=60, help="seconds of load")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--outage", type=float, default=20.0, help="seconds the sink is down")
    p.add_argument("--outage-at", type=float, default=10.0, help="when the outage starts")
    p.add_argument("--drain-timeout", type=float, default=180.0)
    p.add_argument("--window", type=float, default=5.0,
                   help="incident window (s): incidents close this long after the load")
    p.add_argument("--no-events-sink", dest="events_sink", action="store_false",
                   help="no sink receiving every event (incident notices only)")
    p.add_argument("--no-aggregates", dest="aggregates", action="store_false",
                   help="run serve with --no-aggregates (no behaviour store)")
    r = run(p.parse_args())
    print(f"load: {r['requests']} POSTs in {r['load_s']}s = {r['rps']:.0f}/s, "
          f"non-2xx {r['non_2xx']}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (wrk)")
    print(f"serve: {r['cpu_us_per_event']} us CPU per event ({r['serve_cpu_s']} s CPU), "
          f"server-side p99 <= {r['server_p99_le_s']} s, {r['incidents_opened']} incidents; "
          f"wrk used {r['wrk_cpu_s']} s CPU")
    print(f"sink: accepted {r['accepted']}, delivered {r['unique_delivered']} unique "
          f"({r['duplicates']} duplicates; {r['redelivered_409']} redelivered after a lost "
          f"answer, refused as 409), lost {r['lost']}, max queued on disk during "
          f"the outage {r['max_queued_during_outage']}, drained={r['drained']}")
    inc = r["incidents"]
    print(f"incidents: {inc['closed_incidents']} closed, their final counts sum to "
          f"{inc['events_in_closed_incidents']} events (accepted {r['accepted']})")
    print(json.dumps(r))
    lost = r["lost"] if args_events(r) else 0
    ok = inc["events_in_closed_incidents"] == r["accepted"]
    return 0 if ok and lost == 0 and r["duplicates"] == 0 and r["drained"] else 1


def args_events(r: dict[str, Any]) -> bool:
    return bool(r["config"]["events_sink"])


if __name__ == "__main__":
    sys.exit(main())
