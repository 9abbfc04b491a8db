"""Risk flags of a destination name: known channels and storage endpoints, raw IPs, TLDs with a
record of abuse, encoded subdomain labels, generated (DGA-like) domain names.

Sits under ``report.py``: pure functions of a host name and the shared data of
``corral.model.channels``. A flag makes a destination *risky*: the review never suggests allowing
it unless asked to (``--include-risky``), and says why in one line. A TLD merely new to the fleet
is not a flag: that only trained reviewers to ignore flags.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from corral.model import channels
from corral.model.domains import _psl, looks_like_ip

LONG_LABEL: Final = 40  # DNS labels this long are data, not names (max 63)
ENTROPY_LABEL: Final = 16  # shorter labels are too short to judge by entropy
ENTROPY_BITS: Final = 3.5  # bits per character; English-like names stay below this
DENSE_LABEL: Final = 20  # from this length, a label this dense is data whatever its letters
DENSE_BITS: Final = 4.0


_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class Flag:
    kind: str  # a channel category (paste, storage, ...) | raw-ip | abused-tld | encoded | dga
    # | a behaviour flag (see ``behaviour.py``)
    reason: str


def registrable(host: str) -> str:
    """``a.b.example.co.uk`` -> ``example.co.uk`` (the host itself when there is none)."""
    if looks_like_ip(host):
        return host
    # the loader's own list: parsing the public suffix list costs ~0.2 s, once per process
    found = _psl().privatesuffix(host)
    return found if isinstance(found, str) else host


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


def _consonant_run(text: str) -> int:
    best = run = 0
    for ch in text:
        run = run + 1 if ch.isalpha() and ch not in "aeiouy" else 0
        best = max(best, run)
    return best


def encoded_label(host: str) -> str | None:
    """The subdomain label that looks like encoded data (DNS/subdomain exfiltration), if any."""
    base = registrable(host)
    if base == host:
        return None
    for label in host[: -len(base) - 1].split("."):
        if len(label) >= LONG_LABEL:
            return label
        digits = sum(ch.isdigit() for ch in label)
        bits = entropy(label)
        if len(label) >= DENSE_LABEL and bits >= DENSE_BITS:
            return label
        if len(label) >= ENTROPY_LABEL and _HEX.fullmatch(label) and 0 < digits < len(label):
            return label  # hex chunks: at most 4 bits/char, so entropy alone misses them
        if (len(label) >= ENTROPY_LABEL and bits >= ENTROPY_BITS
                and (digits >= 3 or _consonant_run(label) >= 5)):
            return label
    return None


# names that only mean something inside one network: never an allow entry a review proposes
_LOCAL_SUFFIXES: Final = ("localhost", "local", "internal", "intranet", "lan", "home",
                          "localdomain", "home.arpa", "corp", "private")


def not_an_allow_entry(host: str) -> str | None:
    """Why ``host`` must never be proposed as an allow entry (loopback, private or single-label
    names, IP literals), or None. The gateway refuses such destinations anyway."""
    if looks_like_ip(host) or "/" in host:
        return "an IP literal (name the address and port in an allow entry by hand, after review)"
    if "." not in host.strip("."):
        return "a single-label name (resolves through the local search path)"
    if any(host == s or host.endswith("." + s) for s in _LOCAL_SUFFIXES):
        return "a loopback or private name (never a public destination)"
    return None


DGA_LABEL: Final = 10  # shorter registrable labels are too short to judge
_VOWELS = frozenset("aeiouy")


def generated_label(host: str) -> str | None:
    """The registrable domain's own label when it looks machine-generated (DGA-like): long,
    with almost no vowels, or digits scattered through a high-entropy run of letters."""
    base = registrable(host)
    label = base.split(".", 1)[0].replace("-", "")
    if len(label) < DGA_LABEL:
        return None
    letters = [ch for ch in label if ch.isalpha()]
    digits = len(label) - len(letters)
    vowels = sum(ch in _VOWELS for ch in letters)
    if letters and vowels / len(letters) < 0.15 and _consonant_run(label) >= 5:
        return label
    if digits >= 3 and len(letters) >= 3 and entropy(label) >= 3.2 and _transitions(label) >= 4:
        return label
    return None


def _transitions(label: str) -> int:
    """How often the label switches between letters and digits (``a1b2`` -> 3)."""
    return sum(a.isdigit() != b.isdigit() for a, b in itertools.pairwise(label))


# how much each flag kind weighs in a destination's and an agent's risk (unknown kinds: 1)
WEIGHTS: Final = {
    "encoded": 4, "beacon": 4, "raw-ip": 3, "dga": 3, "paste": 3, "tunnel": 3,
    "file-sharing": 3, "request-catcher": 3, "doh": 3, "chat-webhook": 3, "storage": 2,
    "cdn-front": 2, "abused-tld": 2, "upload": 2, "new-dest-upload": 2, "growth": 2,
    "one-pod": 1, "off-hours": 1,
}


def risk_score(flags: Iterable[Flag]) -> int:
    """The weight of a set of flags (each kind counted once)."""
    return sum(WEIGHTS.get(kind, 1) for kind in {f.kind for f in flags})


def flags_for(host: str) -> list[Flag]:
    """Every risk flag of ``host``."""
    if looks_like_ip(host):
        return [Flag("raw-ip", "raw IP address: no name to review, bypasses DNS-based controls")]
    out: list[Flag] = []
    channel = channels.channel_for_host(host)
    if channel is not None:
        out.append(Flag(channel.category, f"{channel.domain}: {channel.reason}"))
    label = encoded_label(host)
    if label is not None:
        out.append(Flag("encoded", f"subdomain label {label[:24]}... ({len(label)} chars, "
                                   f"{entropy(label):.1f} bits/char) looks like encoded data: "
                                   "DNS/subdomain exfiltration"))
    dga = generated_label(host)
    if dga is not None and label is None:
        out.append(Flag("dga", f"domain label {dga!r} looks machine-generated (DGA-like)"))
    tld = host.rpartition(".")[2]
    if tld in channels.ABUSED_TLDS:
        source = f"{channels.ABUSED_TLDS_SOURCE}, {channels.ABUSED_TLDS_DATE}"
        out.append(Flag("abused-tld", f".{tld} is among the most abused TLDs ({source})"))
    return out
