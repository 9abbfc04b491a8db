"""``corral release AGENT``: undo a quarantine through the running control plane's API.

The control plane performs and logs each step (gateway back to the policy, pod labels removed);
this command asks for it and prints what happened. Exit 0 when every step succeeded, 1 when one
failed (see ``corral serve``'s action log: GET /v1/actions), 2 when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from corral.cli import _common

DEFAULT_SERVER = "http://127.0.0.1:8765"
LOCAL_TOKEN = ".corral/control/admin.token"  # what corral up creates


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "release", help="lift the quarantine of an agent (gateway and pod labels)",
        description="Ask `corral serve` to release a quarantined agent; prints every step.")
    p.add_argument("agent", help="agent name as in corral.yaml")
    p.add_argument("--server", default=DEFAULT_SERVER, metavar="URL",
                   help="control plane base URL (default http://127.0.0.1:8765)")
    p.add_argument("--token-file", metavar="FILE",
                   help=f"admin bearer token (default: {LOCAL_TOKEN} when it exists and "
                        "--server is the local stack's)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    _common.add_output_arg(p, choices=("text", "json"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    url = f"{args.server.rstrip('/')}/v1/agents/{quote(args.agent)}/release"
    req = urllib.request.Request(url, data=b"", method="POST")
    token_file = args.token_file
    if token_file is None and args.server == DEFAULT_SERVER and Path(LOCAL_TOKEN).exists():
        token_file = LOCAL_TOKEN  # corral up's admin token, never sent anywhere else
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise _common.CliError(f"--token-file {token_file}: {exc}") from None
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        answer = _json_or_text(exc.read())
        if exc.code != 502:  # 502 carries the steps of a partly failed release
            raise _common.CliError(f"{url}: HTTP {exc.code}: {answer}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _common.CliError(f"cannot reach the control plane at {args.server}: {exc}") from None
    if args.output == "json":
        _common.emit(answer, "json")
    else:
        con = _common.stdout()
        for step in answer.get("steps", []):
            mark = "ok " if step.get("ok") else "FAILED"
            con.print(f"{mark} {step['action']} {step['target']}"
                      f" {step.get('status', step.get('error', ''))}", markup=False)
        con.print(f"agent {args.agent}: {'released' if answer.get('ok') else 'release incomplete'}",
                  markup=False)
    return _common.EXIT_OK if answer.get("ok") else _common.EXIT_FINDINGS


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
