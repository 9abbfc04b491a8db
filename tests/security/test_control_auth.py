"""Playing the attacker against ``corral serve``'s authentication, over real sockets.

The issue's two calls: an unauthenticated forged Falco alert that quarantined agent ``beta``,
and an unauthenticated release. Both are refused now; an ingest credential (token or Falco's
client certificate) cannot release; serve refuses to listen beyond loopback without
credentials; a bad token file stops it instead of silently disabling the check.
"""

from __future__ import annotations

import argparse
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from corral.cli import _common, build_parser
from corral.cli.serve import server_settings
from corral.gateway.testing import eventually
from tests.security.serve import (
    ADMIN_TOKEN,
    INGEST_TOKEN,
    POLICY,
    Serve,
    assert_no_traceback,
    forged_alert,
)


def _quarantined(s: Serve) -> dict[str, bool]:
    status, body = s.request("GET", "/v1/agents", token=ADMIN_TOKEN)
    assert status == 200
    return {a["name"]: a["quarantined"] for a in body["agents"]}


def test_forged_alert_without_credentials_is_refused(serve: Serve) -> None:
    for token in (None, "wrong-token-0123456789", ADMIN_TOKEN):
        assert serve.ingest(forged_alert(), token=token) == 401
    status, _ = serve.request("POST", "/v1/gateway", b'{"kind":"access"}')
    assert status == 401
    assert _quarantined(serve) == {"alpha": False, "beta": False}
    assert serve.metric('corral_control_rejected_total{reason="unauthorized"}') == 4


def test_release_needs_the_admin_credential_not_the_ingest_one(serve: Serve) -> None:
    assert serve.ingest(forged_alert()) == 200  # Falco's credential: the alert is accepted
    # and quarantines (critical >= min_severity) at the next drain: poll by time, not by count
    assert eventually(lambda: _quarantined(serve)["beta"])
    for token in (None, INGEST_TOKEN, "Bearer-less"):
        status, _ = serve.request("POST", "/v1/agents/beta/release", b"", token=token)
        assert status == 401
    assert _quarantined(serve)["beta"]
    status, _ = serve.request("POST", "/v1/agents/alpha/quarantine", b"", token=INGEST_TOKEN)
    assert status == 401
    status, answer = serve.request("POST", "/v1/agents/beta/release", b"", token=ADMIN_TOKEN)
    assert status == 200 and answer["ok"]
    assert _quarantined(serve) == {"alpha": False, "beta": False}


def test_reads_need_the_admin_credential_probes_do_not(serve: Serve) -> None:
    for path in ("/v1/incidents", "/v1/agents", "/v1/actions", "/v1/sinks", "/v1/incidents/x"):
        assert serve.request("GET", path)[0] == 401
        assert serve.request("GET", path, token=INGEST_TOKEN)[0] == 401
    assert serve.request("GET", "/healthz")[0] == 200
    assert serve.request("GET", "/metrics")[0] == 200


def _certs(tmp: Path) -> dict[str, Path]:
    ca, other = trustme.CA(), trustme.CA()
    paths = {name: tmp / f"{name}.pem" for name in
             ("ca", "server", "server-key", "falco", "falco-key", "rogue", "rogue-key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server-key"]))
    for name, issuer in (("falco", ca), ("rogue", other)):
        cert = issuer.issue_cert("falco.falco.svc")
        cert.cert_chain_pems[0].write_to_path(str(paths[name]))
        cert.private_key_pem.write_to_path(str(paths[f"{name}-key"]))
    return paths


def _client(paths: dict[str, Path], who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(paths["ca"]))
    if who is not None:
        ctx.load_cert_chain(str(paths[who]), str(paths[f"{who}-key"]))
    return ctx


def test_falco_client_certificate_authenticates_ingest_only(tmp_path: Path) -> None:
    paths = _certs(tmp_path)
    s = Serve(tmp_path, "--tls-cert", str(paths["server"]), "--tls-key",
              str(paths["server-key"]), "--client-ca", str(paths["ca"]))
    try:
        s.ssl = _client(paths, None)
        s.wait_up()
        assert s.ingest(forged_alert(), token=None) == 401  # no certificate, no token
        s.ssl = _client(paths, "falco")  # what Falco's http_output mtls presents
        assert s.ingest(forged_alert("alpha"), token=None) == 200
        assert s.request("POST", "/v1/agents/alpha/release", b"")[0] == 401
        assert s.request("GET", "/v1/incidents")[0] == 401
        s.ssl = _client(paths, None)
        assert s.ingest(forged_alert(), token=INGEST_TOKEN) == 200  # the shipper's token
        s.ssl = _client(paths, "rogue")  # a certificate from another CA: handshake refused
        with pytest.raises(OSError):
            s.ingest(forged_alert(), token=None)
    finally:
        s.stop()
    assert_no_traceback(s)


def _args(tmp: Path, *extra: str) -> argparse.Namespace:
    argv = ["serve", "-f", str(tmp / "corral.yaml"), *extra]
    return build_parser(argv).parse_args(argv)


def test_no_credentials_beyond_loopback_is_refused(tmp_path: Path) -> None:
    with pytest.raises(_common.CliError, match="insecure-no-auth"):
        server_settings(_args(tmp_path, "--listen", "0.0.0.0:8765"), "0.0.0.0")
    token = tmp_path / "admin.token"
    token.write_text(ADMIN_TOKEN)
    with pytest.raises(_common.CliError, match="ingest credential"):
        server_settings(_args(tmp_path, "--listen", "10.0.0.1:8765", "--admin-token-file",
                              str(token)), "10.0.0.1")
    # loopback (corral up) and an explicit opt-out are allowed
    assert server_settings(_args(tmp_path), "127.0.0.1").ingest_open
    assert server_settings(_args(tmp_path, "--listen", "[::1]:8765"), "::1").admin_token is None
    assert server_settings(_args(tmp_path, "--listen", "0.0.0.0:1", "--insecure-no-auth"),
                           "0.0.0.0").ingest_open


@pytest.mark.parametrize("content", [None, "", "\n  \n", "short", "two words-0123456789abcdef"])
def test_bad_token_files_stop_serve(tmp_path: Path, content: str | None) -> None:
    token = tmp_path / "admin.token"
    if content is not None:
        token.write_text(content)
    with pytest.raises(_common.CliError, match="--admin-token-file"):
        server_settings(_args(tmp_path, "--admin-token-file", str(token)), "127.0.0.1")


def test_same_token_for_ingest_and_admin_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "one.token"
    token.write_text(ADMIN_TOKEN)
    with pytest.raises(_common.CliError, match="must differ"):
        server_settings(_args(tmp_path, "--admin-token-file", str(token),
                              "--ingest-token-file", str(token)), "127.0.0.1")


def test_serve_exits_2_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text(POLICY)
    (tmp_path / "empty.token").write_text("")
    for extra in (["--listen", "0.0.0.0:0"], ["--admin-token-file", str(tmp_path / "empty.token")],
                  ["--ingest-token-file", str(tmp_path / "missing.token")]):
        out = subprocess.run([sys.executable, "-m", "corral", "serve", "-f",
                              str(tmp_path / "corral.yaml"), "--state", str(tmp_path / "st"),
                              *extra], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 2, out
        assert "Traceback" not in out.stderr and "error" in out.stderr.lower(), out.stderr
