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

# verb -> one-line summary, in the order ``corral --help`` lists them. Only the verb being run is
# imported: the gateway, the control plane and the CEL engine are heavy, and `corral review`
# or `corral validate` in CI should not pay for them.
COMMANDS: dict[str, str] = {
    "up": "run the gateway and control plane on this machine from one policy",
    "render": "write manifests for every layer into a folder",
    "validate": "check a policy file and list its errors and warnings",
    "schema": "print the JSON Schema of the policy file",
    "check": "evaluate the compiled admission policy against manifests, offline",
    "gateway": "run the egress gateway",
    "serve": "run the control plane (Falco and gateway events, incidents, sinks)",
    "release": "lift the quarantine of an agent",
    "learn": "ingest gateway access logs and Falco events into the behaviour store",
    "review": "weekly review: new destinations, denials, anomalies, suggested policy changes",
    "audit": "find weaknesses and drift in network policy of manifests or a cluster dump",
    "images": "monthly: image inventory per agent and namespace, with registry approval",
    "vulns": "monthly: scanner reports (Trivy, Grype) joined with the running agent images",
    "conformance": "quarterly: policy against observed behaviour, with the change as a diff",
    "threats": "quarterly: write the threat model from the policy and the last drill",
    "topology": "what may talk to what: SVG, Mermaid or text",
    "verify": "check that the boundaries hold (locally in namespaces, or in a cluster)",
    "drill": "run compromised-agent techniques and score each control",
    "run": "run a command as an agent, inside the boundary its policy draws",
}


def _verb(argv: Sequence[str]) -> str | None:
    """The verb of an argument list (the first word that is not an option), if it is known."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser for the verb in ``argv``; other verbs get a light placeholder."""
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Keep AI-agent workloads inside declared boundaries.",
    )
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    chosen = _verb(argv)
    for name, summary in COMMANDS.items():
        if name == chosen:
            importlib.import_module(f"corral.cli.{name}").register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    if not argv:  # no verb: show them all, not argparse's "arguments are required"
        parser.print_help(sys.stderr)
        return _common.EXIT_USAGE
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
