"""Command-line clients through the gateway as separate processes, configured by the environment
(``http_proxy``/``https_proxy``, a merged CA bundle): curl, wget, git (dumb and smart HTTP), pip
(a local simple index) and Node's fetch with undici's proxy agents. Each denial test records
exactly what the client prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.compat.conftest import DENIED, NODE_MODULES, Tier, need, why
from tests.compat.origin import PACKAGE, REPO, WHEEL

FETCH_JS = Path(__file__).with_name("fetch.mjs")


# -- curl
@pytest.mark.parametrize("args", [[], ["--http1.1"], ["--http2"]], ids=["default", "h1", "h2"])
def test_curl_https(tier: Tier, args: list[str]) -> None:
    need("curl")
    done = tier.run("curl", "-sSf", "--max-time", "10", *args, tier.https())
    assert done.returncode == 0, done.stderr
    want = "1.1" if args == ["--http1.1"] else "2"  # curl offers h2 by ALPN unless told not to
    assert json.loads(done.stdout)["http_version"] == want


def test_curl_http(tier: Tier) -> None:
    need("curl")
    done = tier.run("curl", "-sSf", "--max-time", "10", "-d", "payload", tier.http())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["body"] == "payload"


def test_curl_http2_on_plain_http(tier: Tier) -> None:
    need("curl")
    done = tier.run("curl", "-sSf", "--max-time", "10", "--http2", tier.http())
    assert done.returncode == 0, done.stdout


def test_curl_denied(tier: Tier) -> None:
    need("curl")
    done = tier.run("curl", "-sS", "--max-time", "10", tier.https(DENIED))
    # curl names only the status of a refused CONNECT; `curl -v` shows the status line
    assert (done.returncode, done.stderr) == (
        56, "curl: (56) CONNECT tunnel failed, response 403\n")
    verbose = tier.run("curl", "-sSv", "--max-time", "10", tier.https(DENIED))
    assert f"< HTTP/1.1 403 {why(DENIED, tier.tls)}\n" in verbose.stderr
    plain = tier.run("curl", "-sS", "--max-time", "10", tier.http(DENIED))
    assert (plain.returncode, plain.stdout) == (0, why(DENIED, tier.plain) + "\n")
    failing = tier.run("curl", "-sSf", "--max-time", "10", tier.http(DENIED))
    assert (failing.returncode, failing.stderr) == (
        22, "curl: (22) The requested URL returned error: 403\n")


# -- wget (Debian's is built with GnuTLS: it ignores SSL_CERT_FILE, so the bundle is a flag)
def test_wget(tier: Tier) -> None:
    need("wget")
    for url in (tier.http(), tier.https()):
        done = tier.run("wget", "-q", "-O-", f"--ca-certificate={tier.bundle}", url)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["path"] == "/echo"


def test_wget_denied(tier: Tier) -> None:
    need("wget")
    done = tier.run("wget", "-nv", "-O-", f"--ca-certificate={tier.bundle}", tier.https(DENIED))
    assert done.returncode == 4
    # wget prints the reason phrase and its own message with no separator
    assert (f"Proxy tunneling failed: {why(DENIED, tier.tls)}"
            "Unable to establish SSL connection.\n") in done.stderr
    plain = tier.run("wget", "-nv", "-O-", tier.http(DENIED))
    assert plain.returncode == 8
    assert f"ERROR 403: {why(DENIED, tier.plain)}." in plain.stderr


# -- git (libcurl underneath: http_proxy/https_proxy and GIT_SSL_CAINFO)
@pytest.mark.parametrize("kind", ["dumb", "smart"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_git_clone(tier: Tier, tmp_path: Path, kind: str, scheme: str) -> None:
    need("git")
    url = (tier.http if scheme == "http" else tier.https)(path=f"/{kind}/{REPO}")
    done = tier.run("git", "clone", "-q", url, str(tmp_path / "clone"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "clone" / "README").read_text() == "compat tier\n"


def test_git_denied(tier: Tier, tmp_path: Path) -> None:
    need("git")
    url = tier.https(DENIED, f"/smart/{REPO}")
    done = tier.run("git", "clone", "-q", url, str(tmp_path / "a"))
    assert (done.returncode, done.stderr) == (
        128, f"fatal: unable to access '{url}/': CONNECT tunnel failed, response 403\n")
    url = tier.http(DENIED, f"/smart/{REPO}")
    done = tier.run("git", "clone", "-q", url, str(tmp_path / "b"))
    assert (done.returncode, done.stderr) == (
        128, f"remote: {why(DENIED, tier.plain)}\n"
        f"fatal: unable to access '{url}/': The requested URL returned error: 403\n")


# -- pip (requests/urllib3 underneath: HTTPS_PROXY and PIP_CERT or REQUESTS_CA_BUNDLE)
def pip(tier: Tier, tmp_path: Path, index: str, *args: str) -> tuple[int, str, str]:
    done = tier.run(sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                    "--disable-pip-version-check", "-d", str(tmp_path), "--index-url", index,
                    *args, PACKAGE, env=tier.env(PIP_CONFIG_FILE="/dev/null"))
    return done.returncode, done.stdout, done.stderr


def test_pip_download(tier: Tier, tmp_path: Path) -> None:
    code, out, err = pip(tier, tmp_path, tier.https(path="/simple/"))
    assert code == 0, err
    assert (tmp_path / WHEEL).stat().st_size > 0 and "Successfully downloaded" in out


def test_pip_denied(tier: Tier, tmp_path: Path) -> None:
    # pip shows the refusal only in its "Retrying" warnings: one retry instead of five (pip's
    # default, with back-off) keeps the test quick and shows the same line
    code, _out, err = pip(tier, tmp_path, tier.https(DENIED, "/simple/"), "--retries", "1")
    assert code == 1
    assert f"after connection broken by 'OSError(\"Tunnel connection failed: 403 " \
           f"{why(DENIED, tier.tls)}\")': /simple/{PACKAGE}/" in err
    assert err.endswith(f"ERROR: No matching distribution found for {PACKAGE}\n")


# -- Node: fetch() with undici's ProxyAgent and EnvHttpProxyAgent
def node_fetch(tier: Tier, mode: str, url: str) -> dict[str, object]:
    need("node")
    if not (NODE_MODULES / "undici").is_dir():
        pytest.fail(f"undici is not installed in {NODE_MODULES}: run `bash scripts/dev setup`")
    done = tier.run("node", str(FETCH_JS), mode, url,
                    env=tier.env(CORRAL_NODE_MODULES=str(NODE_MODULES)))
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


@pytest.mark.parametrize("mode", ["proxy", "env"])
def test_node_fetch_https(tier: Tier, mode: str) -> None:
    got = node_fetch(tier, mode, tier.https())
    assert got["status"] == 200 and json.loads(str(got["body"]))["path"] == "/echo"


@pytest.mark.parametrize("mode", ["proxy", "env"])
def test_node_fetch_http(tier: Tier, mode: str) -> None:
    got = node_fetch(tier, mode, tier.http())
    assert got.get("status") == 200, got


@pytest.mark.parametrize("mode", ["proxy", "env"])
def test_node_fetch_denied(tier: Tier, mode: str) -> None:
    # undici drops the status line of a refused CONNECT: only the status code reaches the program
    for url in (tier.https(DENIED), tier.http(DENIED)):
        assert node_fetch(tier, mode, url) == {
            "error": "TypeError: fetch failed",
            "causes": ["Error: Request was cancelled.",
                       "AbortError: Proxy response (403) !== 200 when HTTP Tunneling"]}
