"""Where the quarantine set lives across restarts: the overlay the control plane writes, and
the gateway's own state file for changes made through the admin API.

In a cluster the overlay is a ConfigMap mount (read-only; the control plane patches the
ConfigMap, the kubelet refreshes the file within a minute or so) and the state file sits on
an ``emptyDir`` (writable, survives a container restart). The rule is "the last change wins":
the state file records the set the admin API made *and the overlay it was made against*. At
start, when the overlay still reads as it did then, the state file is newer and wins; when the
overlay has changed since, the overlay wins. Every overlay change rewrites the state file to
follow it. Without a state file, admin changes are written to the overlay itself (the local
stack's writable file). A failed write is logged and reported, never raised: the admin API
always replies, and the change applies in memory at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import orjson

from corral.gateway import state

log = logging.getLogger("corral.gateway")


def read_set(path: str | None) -> frozenset[str]:
    """The ``quarantined`` list of an overlay file; empty when there is none."""
    if path is None or not os.path.exists(path):
        return frozenset()
    with open(path, "rb") as fh:
        return state.parse_overlay(fh.read())


def write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _dump_state(agents: Iterable[str], overlay: Iterable[str]) -> bytes:
    return orjson.dumps({"quarantined": sorted(agents), "overlay": sorted(overlay)},
                        option=orjson.OPT_INDENT_2) + b"\n"


def _read_state(path: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(quarantined, overlay it was made against), or None when absent or unusable."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        doc = orjson.loads(data)
        base = doc.get("overlay") if isinstance(doc, dict) else None
        if not isinstance(base, list) or not all(isinstance(n, str) for n in base):
            raise ValueError("no overlay list")
        return state.parse_overlay(data), frozenset(base)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("gateway: quarantine state %s ignored: %s", path, exc)
        return None


class QuarantineFiles:
    """The overlay (maybe read-only) and the state file (writable) of one gateway."""

    def __init__(self, overlay: str | None, state_path: str | None) -> None:
        self.overlay = overlay
        self.state = state_path
        self._base = frozenset[str]()

    def initial(self) -> frozenset[str]:
        """The set to start with; ``OSError``/``ValueError`` when the overlay is unreadable."""
        self._base = read_set(self.overlay)
        saved = _read_state(self.state) if self.state is not None else None
        if saved is not None and saved[1] == self._base:
            return saved[0]
        return self._base

    def overlay_changed(self, agents: frozenset[str]) -> None:
        """The control plane's overlay changed to ``agents``: it is now the latest word."""
        self._base = agents
        if self.state is not None:
            self._write(self.state, _dump_state(agents, agents))

    def persist(self, agents: frozenset[str]) -> bool:
        """Record an admin API change; False (logged) when it could not be written."""
        if self.state is not None:
            return self._write(self.state, _dump_state(agents, self._base))
        if self.overlay is not None:
            return self._write(self.overlay, state.dump_overlay(agents))
        return True  # nothing asked to persist it

    @staticmethod
    def _write(path: str, data: bytes) -> bool:
        try:
            write_atomic(path, data)
        except OSError as exc:
            log.error("gateway: quarantine change applied but not saved to %s: %s", path,
                      exc.strerror or exc)
            return False
        return True
