"""A/B of corral against itself: two or more source trees, same setup as run.py, interleaved.

Not part of the test suite. Each round starts corral from every tree in turn (order rotated) in
the benchmark's own network namespace (nginx origin, dnsmasq, pinned cores) and runs the chosen
scenarios; prints the CPU µs per request of each tree, median and every round, and how many
upstream connections the gateway closed (TIME-WAIT towards the origin) after each scenario.

    git archive <old> corral | tar -x -C /tmp/old; git archive HEAD corral | tar -x -C /tmp/new
    python bench/gateway/ab.py /tmp/old /tmp/new --scenarios connect_new,http_keepalive --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the benchmark runner: shared setup


def time_wait_to_origin() -> int:
    out = subprocess.run(["ss", "-Htan", "state", "time-wait",
                          f"( dport = :{run.ORIGIN_HTTP} or dport = :{run.ORIGIN_TLS} )"],
                         capture_output=True, text=True, check=False).stdout
    return out.count("\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("srcs", nargs="+", type=Path, help="folders holding a corral package")
    ap.add_argument("--scenarios", default="connect_new")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--conc", type=int, default=50)
    ap.add_argument("--light-rps", type=float, default=1000.0)
    ap.add_argument("--light-conc", type=int, default=10)
    args = ap.parse_args()
    if run.NS_ENV not in os.environ:
        return run.in_own_namespace(Path(__file__).resolve())
    srcs = [str(s.resolve()) for s in args.srcs]
    scenarios = args.scenarios.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="corral-ab-"))
    os.chmod(workdir, 0o755)
    run.setup_origin(workdir)
    cpu: dict[str, dict[str, list[float]]] = {s: {sc: [] for sc in scenarios} for s in srcs}
    with run.running(run.start_origin_and_dns(workdir)):
        for i in range(args.rounds):
            for src in srcs[i % len(srcs):] + srcs[: i % len(srcs)]:
                os.environ["CORRAL_BENCH_SRC"] = src
                proc = run.start_proxy("corral", workdir)
                with run.running([proc]):
                    run.hey(run.URLS["http_keepalive"], proxy_port=run.PORTS["corral"],
                            seconds=1, conc=4)
                    for sc in scenarios:
                        res = run.run_scenario("corral", sc, proc, args)
                        run.settle(run.PORTS["corral"])
                        cpu[src][sc].append(res.cpu_us_per_req or 0.0)
                        run.log(f"{src} {sc}: {res.rps:.0f} req/s, "
                                f"{res.cpu_us_per_req or 0:.1f} µs/req, status {res.status}, "
                                f"errors {res.errors}, time-wait {time_wait_to_origin()}")
    for sc in scenarios:
        for src in srcs:
            values = cpu[src][sc]
            print(f"{sc:18} {src}: median {statistics.median(values):6.1f} µs/req, "
                  f"rounds {[round(v) for v in values]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
