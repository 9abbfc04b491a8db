"""The command line: ``corral <verb>``. Thin: each verb parses arguments and calls one layer.

Verbs live one per module in this package, listed in ``COMMANDS`` in the order ``--help`` shows
them. Exit codes: 0 success, 1 findings (violations, failed checks), 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from corral import __version__
from corral.cli import _common

COMMANDS: tuple[str, ...] = (
    "render",
    "validate",
    "check",
    "learn",
    "review",
    "gateway",
    "up",
    "schema",
    "audit",
    "run",
    "verify",
    "drill",
    "serve",
    "release",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Keep AI-agent workloads inside declared boundaries.",
    )
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"corral.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except _common.CliError as exc:
        _common.err(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
