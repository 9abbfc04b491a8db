"""The fixed vocabulary of corral's Falco rules: tool lists, shared macros, rule kinds. Pure.

Where it sits: ``corral.compile.falco`` combines these with the policy (agents, allowlists,
``spec.runtime``) into the rules file. Nothing here depends on a policy.

Field spellings are chosen so that both current Falco (its supported-fields reference) and
Debian's sysdig 0.29, which the tests compile every condition in, accept them; the one field
sysdig lacks, ``proc.is_exe_upper_layer``, lives alone in macro ``corral_exe_upper_layer`` so
the tests can hold out exactly that macro. ``evt.dir`` is deprecated in current Falco (which
sees only exit events) and is not used: the spawn and open macros test the return value
instead, which only exit events carry, so replays of older captures match once per syscall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from corral.model.runtime import RuleKind

REQUIRED_ENGINE_VERSION: Final = "0.57.0"  # the engine of the supported-fields reference used
CONTAINER_PLUGIN: Final = {"name": "container", "version": "0.4.0"}  # k8s.* and container.*

SHELLS: Final = ("ash", "bash", "csh", "ksh", "sh", "tcsh", "zsh", "dash", "fish", "busybox")
PACKAGE_TOOLS: Final = (
    # OS package managers (process names as the kernel truncates them: 15 characters)
    "apt", "apt-get", "aptitude", "dpkg", "yum", "dnf", "microdnf", "rpm", "apk", "zypper",
    # language package managers
    "pip", "pip3", "pipx", "uv", "conda", "mamba", "micromamba", "npm", "npx", "yarn", "pnpm",
    "gem", "bundle", "cargo", "composer", "go",
    # compilers, assemblers and linkers (build after delivery)
    "gcc", "g++", "cc", "c++", "cc1", "cc1plus", "clang", "clang++", "tcc", "as", "ld",
    "collect2", "rustc", "javac", "make", "cmake",
)
MINER_BINARIES: Final = (
    "xmrig", "xmr-stak", "minerd", "cpuminer", "cgminer", "bfgminer", "ethminer", "ccminer",
    "t-rex", "nbminer", "lolminer", "nanominer", "gminer", "srbminer-multi",
)
KUBE_API_NAMES: Final = ("kubernetes.default.svc.cluster.local",)
LOOPBACK_V4: Final = "127.0.0.0/8"

# Shared macros: name -> condition. Lists they use are rendered before them.
MACROS: Final[tuple[tuple[str, str], ...]] = (
    ("corral_spawned_process", "(evt.type in (execve, execveat) and evt.rawres = 0)"),
    ("corral_open_read",
     "(evt.type in (open, openat, openat2) and evt.is_open_read = true and fd.typechar = 'f'"
     " and fd.num >= 0)"),
    ("corral_outbound_connect",
     "((evt.type = connect or (evt.type in (sendto, sendmsg) and fd.l4proto != tcp"
     " and fd.connected = false and fd.name_changed = true))"
     " and (fd.typechar = 4 or fd.typechar = 6)"
     " and (evt.rawres >= 0 or evt.res = EINPROGRESS))"),
    ("corral_loopback_destination",
     f'(fd.snet in ("{LOOPBACK_V4}") or fd.sip = "::1")'),
    ("corral_kube_api_destination",
     "((fd.sip in (corral_kube_api_addresses) and fd.sport in (corral_kube_api_ports))"
     " or fd.sip.name in (corral_kube_api_names))"),
    ("corral_metadata_destination", "(fd.sip in (corral_metadata_addresses))"),
    ("corral_miner_destination",
     "(fd.sport in (corral_miner_ports) or fd.sip.name in (corral_miner_domains))"),
    ("corral_miner_command",
     "(proc.name in (corral_miner_binaries) or proc.cmdline contains \"stratum+tcp\""
     " or proc.cmdline contains \"stratum+ssl\" or proc.cmdline contains \"stratum2+tcp\")"),
    ("corral_exe_upper_layer", "(proc.is_exe_upper_layer = true)"),
)

_WHO = ("ns=%k8s.ns.name pod=%k8s.pod.name container=%container.id"
        " image=%container.image.repository labels=%k8s.pod.labels")
_PROC = ("process=%proc.name exepath=%proc.exepath parent=%proc.pname cmdline=%proc.cmdline"
         " user=%user.name uid=%user.uid")
NET_OUTPUT: Final = ("connection=%fd.name server=%fd.sip port=%fd.sport server_name=%fd.sip.name"
        " proto=%fd.l4proto")


@dataclass(frozen=True, slots=True)
class Kind:
    """One rule kind: how it reads, how bad it is, which ATT&CK technique it evidences."""

    kind: RuleKind
    title: str
    desc: str
    priority: str
    tags: tuple[str, ...]
    output: str


KINDS: Final[tuple[Kind, ...]] = (
    Kind("unexpected_process", "unexpected process",
         "A process not in the agent's `processes` allowlist started in one of its containers.",
         "WARNING", ("process", "mitre_execution", "T1059"),
         f"process outside allowlist | {_WHO} {_PROC}"),
    Kind("shell", "shell",
         "A shell started, or ran a command, in the agent's container; the agent's allowlist "
         "does not include that shell.",
         "WARNING", ("process", "shell", "mitre_execution", "T1059.004"),
         f"shell in agent container | {_WHO} {_PROC} pcmdline=%proc.pcmdline"),
    Kind("package_tool", "package manager or compiler",
         "A package manager or compiler the agent's allowlist does not include ran in its "
         "container: tools are being installed or built after delivery.",
         "ERROR", ("process", "mitre_command_and_control", "T1105", "mitre_defense_evasion",
                   "T1027.004"),
         f"package manager or compiler run | {_WHO} {_PROC}"),
    Kind("drop_and_execute", "binary dropped and executed",
         "An executable that is not part of the image (overlayfs upper layer: written after "
         "the container started) was executed.",
         "CRITICAL", ("process", "mitre_persistence", "TA0003", "mitre_execution", "T1204.002"),
         f"executable not in image run | {_WHO} {_PROC} exe=%proc.exe cwd=%proc.cwd"),
    Kind("kube_api", "Kubernetes API contact",
         "The agent's container connected to the Kubernetes API server.",
         "WARNING", ("network", "k8s", "mitre_discovery", "T1613"),
         f"Kubernetes API contacted | {_WHO} {_PROC} {NET_OUTPUT}"),
    Kind("sa_token", "service-account token read",
         "A process in the agent's container read a mounted service-account token.",
         "WARNING", ("filesystem", "k8s", "mitre_credential_access", "T1528", "T1552.001"),
         f"service-account token read | {_WHO} {_PROC} file=%fd.name"),
    Kind("cloud_metadata", "cloud metadata contact",
         "The agent's container connected to a cloud instance-metadata or credentials "
         "endpoint.",
         "CRITICAL", ("network", "cloud", "mitre_credential_access", "T1552.005"),
         f"cloud metadata endpoint contacted | {_WHO} {_PROC} {NET_OUTPUT}"),
    Kind("gateway_bypass", "gateway bypass",
         "The agent's container opened a connection that is not to its egress-gateway "
         "listener, cluster DNS, or a declared direct destination.",
         "ERROR", ("network", "mitre_exfiltration", "T1048", "mitre_command_and_control",
                   "T1090"),
         f"connection bypassing the egress gateway | {_WHO} {_PROC} {NET_OUTPUT}"),
    Kind("crypto_miner", "crypto-miner",
         "A known crypto-miner ran, or a connection went to a known mining pool or "
         "Stratum port.",
         "CRITICAL", ("process", "network", "mitre_impact", "T1496"),
         f"crypto-mining activity | {_WHO} {_PROC}"),
)
KIND_BY_NAME: Final = {k.kind: k for k in KINDS}
