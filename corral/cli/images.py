"""``corral images``: the image inventory (manifests, a cluster dump, Falco sightings) and what is
wrong with it. Thin: ``corral.maintain.inventory`` does the work. Exit 1 on findings."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from corral import __version__
from corral.cli import _common
from corral.maintain import inventory as inv_mod
from corral.maintain.inventory import Inventory
from corral.model import findings as fnd
from corral.model.policy import Policy
from corral.verify.objects import InputError, load_paths


def add_sources(p: argparse.ArgumentParser) -> None:
    """Where images are seen: the options ``images`` and ``vulns`` share."""
    _common.add_policy_arg(p)
    p.add_argument("--manifests", action="append", default=[], metavar="PATH",
                   help="manifest files or folders: what is declared (repeatable)")
    p.add_argument("--cluster", action="append", default=[], metavar="PATH",
                   help="kubectl get pods,deployments,... -A -o json dump, or '-': what runs "
                        "(repeatable)")
    p.add_argument("--store", metavar="DB",
                   help="behaviour store of corral learn: images of Falco events")
    p.add_argument("--control-store", metavar="DB",
                   help="corral serve's store: images in the Falco samples of incidents")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "images", help="monthly: image inventory per agent and namespace, with registry approval",
        description="List every image in use, per agent and namespace, from manifests, a cluster "
                    "dump and the images Falco saw: registry approval (the policy's registries, "
                    "as admission normalises them), tag versus digest, mutable tags, images "
                    "running that no manifest declares. Exit 1 on findings.")
    add_sources(p)
    _common.add_output_arg(p, choices=("text", "json", "sarif"))
    p.set_defaults(run=run)


def collect(args: argparse.Namespace, policy: Policy) -> Inventory:
    """The inventory from every source named on the command line (exit 2 on bad input)."""
    if not (args.manifests or args.cluster or args.store or args.control_store):
        raise _common.CliError("name at least one source: --manifests, --cluster, --store or "
                               "--control-store")
    sightings: list[inv_mod.Sighting] = []
    try:
        if args.manifests:
            sightings += inv_mod.from_objects(load_paths(args.manifests, []), policy, "manifest")
        if args.cluster:
            sightings += inv_mod.from_objects(load_paths(args.cluster, []), policy, "cluster")
        if args.store:
            sightings += inv_mod.from_behaviour_store(args.store, policy)
        if args.control_store:
            sightings += inv_mod.from_control_store(args.control_store, policy)
    except (InputError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise _common.CliError(str(exc)) from None
    return inv_mod.build(sightings, policy)


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    inv = collect(args, policy)
    if args.output == "sarif":
        doc = fnd.to_sarif(inv.findings, inv_mod.RULES, "corral-images", __version__)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif args.output == "json":
        _common.emit({"images": [e.as_dict() for e in inv.images],
                      "findings": [f.as_dict(inv_mod.RULES) for f in inv.findings]}, "json")
    else:
        sys.stdout.write(inv_mod.to_text(inv))
    return _common.EXIT_FINDINGS if inv.findings else _common.EXIT_OK
