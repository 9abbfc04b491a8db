"""Shared command-line plumbing: output formats, policy loading with readable errors, exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from corral.model.errors import PolicyError, Problem
from corral.model.load import load_policy_checked
from corral.model.policy import Policy
from corral.model.wording import counted

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
DEFAULT_POLICY = "corral.yaml"  # every verb's default, relative to the current folder


class CliError(Exception):
    """A failure already explained to the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def err(message: str) -> None:
    stderr().print(f"[bold red]error:[/] {message}" if sys.stderr.isatty() else f"error: {message}",
                   markup=sys.stderr.isatty())


def add_policy_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--policy", default=DEFAULT_POLICY, metavar="FILE",
                   help=f"policy file (default: {DEFAULT_POLICY})")


def add_output_arg(p: argparse.ArgumentParser, choices: tuple[str, ...] = ("text", "json", "yaml"),
                   flag: str = "--output", short: str = "-o") -> None:
    p.add_argument(short, flag, dest="output", choices=choices, default=choices[0],
                   help=f"output format: {', '.join(choices)} (default: {choices[0]})")


def print_problems(problems: list[Problem]) -> None:
    con = stderr()
    for prob in problems:
        con.print(str(prob), markup=False)


def require_policy(path: str) -> None:
    """Exit 2 with one message, the same for every verb, when the policy file is missing."""
    if Path(path).exists():
        return
    hint = ("pass -f FILE, or start from the commented example: "
            "cp examples/corral.yaml corral.yaml" if path == DEFAULT_POLICY else "pass -f FILE")
    raise CliError(f"policy file {path!r} not found; {hint}")


def load(path: str, *, quiet_warnings: bool = False) -> Policy:
    """Load a policy or exit 2 with every problem listed (file, line, path, expectation)."""
    require_policy(path)
    try:
        policy, warnings = load_policy_checked(path)
    except PolicyError as exc:
        print_problems(list(exc.problems))
        raise CliError(f"{path}: {counted(len(exc.problems), 'error')}; nothing was written"
                       ) from None
    if warnings and not quiet_warnings:
        print_problems(warnings)
    return policy


def emit(data: Any, fmt: str) -> None:
    """Print structured data as JSON or YAML (text formats are the caller's own)."""
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    elif fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
        raise ValueError(fmt)


def add_target_args(p: argparse.ArgumentParser, *, agent_help: str) -> None:
    """Where ``verify`` and ``drill`` run (--local namespaces or --context cluster) and the
    options both need there."""
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true",
                       help="on this machine, in network namespaces (needs root)")
    where.add_argument("--context", metavar="CTX",
                       help="kubectl context of a cluster (short-lived test pods, cleaned up)")
    add_policy_arg(p)
    p.add_argument("--agent", metavar="NAME", help=agent_help)
    p.add_argument("--image", metavar="REF", help="--context: test pod image, approved, with "
                   "Python and corral (default: the gateway image)")
    p.add_argument("--unapproved-image", metavar="REF", default="docker.io/library/busybox:1.36",
                   help="--context: an image admission must refuse (default: %(default)s)")
    p.add_argument("--control", metavar="URL",
                   help="--context: corral serve's URL, to see the Falco events arrive")
    p.add_argument("--control-token-file", metavar="FILE",
                   help="--context: corral serve's admin token (its incident API needs it)")
    p.add_argument("--kubectl", metavar="PATH", default="kubectl", help="kubectl binary")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="--context: upper bound for each wait (default: %(default)ss)")
    p.add_argument("--keep", metavar="DIR", type=Path,
                   help="--local: keep the lab's work folder (logs, policy, state) in DIR")


MIN_TOKEN = 16  # characters; a token file holding "x" is a mistake, not a credential


def read_token(path: str, flag: str) -> str:
    """The token in ``path``; an unreadable, empty or short file is an error, never "no auth"."""
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{flag} {path}: cannot read the token: {exc}") from None
    if not token:
        raise CliError(f"{flag} {path}: the file is empty; it must hold the token")
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise CliError(f"{flag} {path}: expected one token of at least {MIN_TOKEN} "
                       "characters without spaces")
    return token
