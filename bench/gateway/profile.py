"""Where corral's gateway spends its time in one benchmark scenario (py-spy, sampling).

Same setup as run.py (own network namespace, nginx origin, dnsmasq, pinned cores), one proxy:
corral. Runs hey for ``--seconds`` and samples the gateway with py-spy in the middle, then prints
the functions with the most samples, self and inclusive. ``pip install py-spy`` first.

    python bench/gateway/profile.py http_keepalive [--seconds 8] [--corral-src DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the benchmark runner: shared setup


def top(raw: Path, n: int) -> str:
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        total += k
        frames = stack.split(";")
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    out = [f"{total} samples", "-- self"]
    out += [f"{100 * k / total:5.1f}% {f}" for f, k in own.most_common(n)]
    out += ["-- inclusive"]
    out += [f"{100 * k / total:5.1f}% {f}" for f, k in incl.most_common(n + 8)]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=[*run.SATURATING, "light"])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--corral-src", type=Path, default=None)
    ap.add_argument("--native", action="store_true", help="py-spy --native: C frames too")
    args = ap.parse_args()
    if run.NS_ENV not in os.environ:
        return run.in_own_namespace(Path(__file__).resolve())
    if args.corral_src:
        os.environ["CORRAL_BENCH_SRC"] = str(args.corral_src.resolve())
    workdir = Path(tempfile.mkdtemp(prefix="corral-prof-"))
    run.setup_origin(workdir)
    infra = run.start_origin_and_dns(workdir)
    with run.running(infra):
        proc = run.start_proxy("corral", workdir)
        with run.running([proc]):
            argv = ["taskset", "-c", run.LOAD_CPU, "hey", "-z", f"{args.seconds}s",
                    "-x", f"http://127.0.0.1:{run.PORTS['corral']}"]
            if args.scenario == "light":
                argv += ["-c", "10", "-q", "100"]
            else:
                argv += ["-c", "50"]
            if args.scenario == "connect_new":
                argv.append("-disable-keepalive")
            url = run.URLS["http_keepalive" if args.scenario == "light" else args.scenario]
            load = subprocess.Popen([*argv, url], stdout=subprocess.PIPE, text=True)
            time.sleep(1.0)
            raw = workdir / "profile.txt"
            subprocess.run(["py-spy", "record", "-d", str(max(1, int(args.seconds) - 3)),
                            "-r", "250", "-p", str(proc.popen.pid), "-f", "raw", "-o", str(raw),
                            # --native needs to pause the process (no --nonblocking)
                            *(["--native"] if args.native else ["--nonblocking"])],
                           capture_output=True, check=False)
            out, _ = load.communicate(timeout=args.seconds + 60)
    print(run.parse_hey(out))
    print(top(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
