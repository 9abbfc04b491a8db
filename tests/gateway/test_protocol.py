"""Sans-io tests of the gateway's protocol pieces: no sockets, bytes in, events/bytes out."""

from __future__ import annotations

import re
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.decide import reasons
from corral.gateway.protocol import responses
from corral.gateway.protocol.http import (
    Body,
    End,
    ProtocolError,
    RequestHead,
    RequestReader,
    ResponseReader,
    Tunnel,
    looks_like_request,
    parse_target,
    split_authority,
    upstream_request,
)
from corral.gateway.protocol.tls import parse_client_hello


def feed(data: bytes, max_bytes: int = 16384, max_headers: int = 100) -> list[object]:
    return list(RequestReader(max_bytes, max_headers).feed(data))


def head_of(data: bytes) -> RequestHead:
    [head, *_] = feed(data)
    assert isinstance(head, RequestHead)
    return head


# -- request reader
def test_get_absolute_uri_gives_head_then_end() -> None:
    events = feed(b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert isinstance(events[0], RequestHead) and isinstance(events[1], End)
    assert events[0].target == b"http://a.test/x" and events[0].keep_alive


def test_pipelined_requests_come_out_in_order() -> None:
    data = b"GET http://a.test/1 HTTP/1.1\r\n\r\nGET http://a.test/2 HTTP/1.1\r\n\r\n"
    heads = [e for e in feed(data) if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"http://a.test/1", b"http://a.test/2"]


def test_chunked_body_events() -> None:
    events = feed(b"POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabc\r\n0\r\n\r\n")
    assert isinstance(events[0], RequestHead) and events[0].chunked and events[0].has_body
    assert events[1] == Body(b"abc") and isinstance(events[2], End)


def test_connect_keeps_bytes_sent_after_the_head() -> None:
    events = feed(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03\x01")
    assert isinstance(events[0], RequestHead) and events[0].method == "CONNECT"
    assert events[-1] == Tunnel(b"\x16\x03\x01")


@pytest.mark.parametrize("data", [
    b"garbage\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nBad Header\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
    # accepted by llhttp, refused by the gateway (smuggling, issue 10)
    b"POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nConnection: content-length\r\n\r\nabc",
    b"GET http://a/ HTTP/1.1\r\nConnection: close, Host\r\n\r\n",
    b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"GET http://a/\r\n\r\n",
    b"GET http://a/ HTTP/2.0\r\n\r\n",
])
def test_malformed_requests_are_400(data: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        feed(data)
    assert err.value.status == 400 and err.value.reason == reasons.BAD_REQUEST


def test_oversized_head_is_431_even_when_trickled() -> None:
    reader = RequestReader(2048, 100)
    reader.feed(b"GET http://a.test/ HTTP/1.1\r\n")
    with pytest.raises(ProtocolError) as err:
        for _ in range(100):
            reader.feed(b"X-Pad: " + b"a" * 100 + b"\r\n")
    assert err.value.status == 431


def test_too_many_headers_is_431() -> None:
    data = b"GET http://a.test/ HTTP/1.1\r\n" + b"".join(
        b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n"
    with pytest.raises(ProtocolError) as err:
        feed(data, max_headers=10)
    assert err.value.status == 431


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_reader_never_raises_anything_but_protocol_error(data: bytes) -> None:
    try:
        feed(data, max_bytes=1024, max_headers=10)
    except ProtocolError as exc:
        assert exc.status in (400, 431)


# -- targets
def test_userinfo_never_decides_the_host() -> None:
    target = parse_target(head_of(b"GET http://allowed.test@evil.test/p HTTP/1.1\r\n\r\n"))
    assert target.host == "evil.test" and target.path == "/p"


def test_host_header_must_match_uri() -> None:
    with pytest.raises(ProtocolError) as err:
        parse_target(head_of(b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n"))
    assert err.value.reason == reasons.HOST_MISMATCH
    with pytest.raises(ProtocolError):
        parse_target(head_of(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test:81\r\n\r\n"))
    ok = parse_target(head_of(b"GET http://A.test./ HTTP/1.1\r\nHost: a.TEST:80\r\n\r\n"))
    assert ok.host == "A.test." and ok.port == 80


def test_two_host_headers_are_refused() -> None:
    with pytest.raises(ProtocolError):
        parse_target(head_of(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b\r\n\r\n"))


@pytest.mark.parametrize("target", [b"/relative", b"https://a.test/", b"ftp://a.test/",
                                    b"http://a.test:0/", b"http://a.test:99999/"])
def test_non_proxy_targets_are_400(target: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_target(head_of(b"GET " + target + b" HTTP/1.1\r\n\r\n"))


@pytest.mark.parametrize(("text", "expected"), [
    ("a.test:443", ("a.test", 443)),
    ("[::ffff:7f00:1]:443", ("::ffff:7f00:1", 443)),
    ("2130706433:443", ("2130706433", 443)),
])
def test_connect_authority(text: str, expected: tuple[str, int]) -> None:
    assert split_authority(text, None) == expected


@pytest.mark.parametrize("text", ["a.test", "user@a.test:443", "a:b:443", "a.test:0",
                                  "a.test:99999", ":443", "[::1:443", "a.test/x:443"])
def test_bad_connect_authorities(text: str) -> None:
    with pytest.raises(ValueError):
        split_authority(text, None)


def test_upstream_request_is_origin_form_without_hop_by_hop() -> None:
    head = head_of(b"GET http://a.test:8080/p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\n"
                   b"Proxy-Authorization: x\r\nConnection: keep-alive, X-Secret\r\n"
                   b"X-Secret: 1\r\nKeep-Alive: 5\r\nAccept: */*\r\n\r\n")
    out = upstream_request(head, parse_target(head))
    assert out.startswith(b"GET /p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\n")
    for gone in (b"Proxy-Authorization", b"X-Secret", b"Keep-Alive", b"keep-alive"):
        assert gone not in out
    assert out.endswith(b"Accept: */*\r\n\r\n")  # persistent upstream (pooled)


def test_upstream_request_chunked_body_and_connection_named_headers() -> None:
    head = head_of(b"POST http://a.test/up HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n"
                   b"Transfer-Encoding: chunked\r\nX-Hop: 2\r\nProxy-Foo: 3\r\n"
                   b"Connection: X-Hop\r\nCONNECTION: x-a\r\nX-Keep: 4\r\n\r\n")
    out = upstream_request(head, parse_target(head))
    assert out == (b"POST /up HTTP/1.1\r\nHost: a.test\r\nX-Keep: 4\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")


# -- responses from upstream
def test_response_with_length_keeps_client_alive() -> None:
    r = ResponseReader(head_only=False)
    out = r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
    assert r.done and r.keep_alive and r.status == 200 and not r.reusable
    assert b"Connection: keep-alive" in out and b"Connection: close" not in out
    assert out.endswith(b"\r\n\r\nhi")


def test_upstream_reuse_only_after_a_clean_persistent_response() -> None:
    r = ResponseReader(head_only=False)
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert r.done and r.reusable
    r.feed(b"HTTP/1.1 200 OK\r\n")  # unsolicited bytes afterwards
    assert not r.reusable
    r = ResponseReader(head_only=False)
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n")
    assert r.done and not r.reusable


def test_reader_reset_reads_the_next_response_on_the_same_connection() -> None:
    r = ResponseReader(head_only=False)
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert r.done and r.reusable
    r.reset(head_only=False, keep_alive=False)
    assert not r.done and not r.reusable and r.status == 0
    out = r.feed(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert r.done and r.reusable and r.status == 404 and not r.keep_alive
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n") and b"Connection: close" in out


def test_chunked_response_is_reframed() -> None:
    r = ResponseReader(head_only=False)
    out = r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    assert r.done and out.endswith(b"2\r\nhi\r\n0\r\n\r\n")


def test_close_delimited_response_closes_client() -> None:
    r = ResponseReader(head_only=False)
    out = r.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert not r.done and b"Connection: close" in out
    assert r.eof() and not r.keep_alive


def test_head_response_ends_at_headers_and_interim_is_passed() -> None:
    r = ResponseReader(head_only=True)
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert r.done
    r = ResponseReader(head_only=False)
    out = r.feed(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert not r.done and out.startswith(b"HTTP/1.1 100")
    r.feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert r.done and r.status == 204


def test_broken_response_is_502() -> None:
    with pytest.raises(ProtocolError) as err:
        ResponseReader(head_only=False).feed(b"NOT HTTP\r\n\r\n")
    assert err.value.status == 502


# -- refusals
def test_refusal_is_one_actionable_line_with_reason_header() -> None:
    text = responses.refusal_text(agent="research", host="evil.test", port=443,
                                  reason=reasons.NOT_IN_ALLOWLIST, rule=None)
    assert text.count("\n") == 1 and "'research'" in text and "evil.test:443" in text
    assert reasons.NEXT_STEP[reasons.NOT_IN_ALLOWLIST] in text
    raw = responses.refusal(403, text, reasons.NOT_IN_ALLOWLIST, keep_alive=False,
                            retry_after=7)
    assert raw.startswith(b"HTTP/1.1 403 " + text.strip().encode() + b"\r\n")
    assert b"X-Corral-Reason: not_in_allowlist\r\n" in raw and b"Retry-After: 7\r\n" in raw
    assert raw.endswith(text.encode())


def test_reason_phrase_is_the_line_made_safe_for_the_status_line() -> None:
    phrase = responses.reason_phrase
    assert phrase(403, "corral: agent 'a' may not reach x.test:443\n") == (
        "corral: agent 'a' may not reach x.test:443")
    # CR/LF, controls and non-ASCII from the request cannot end or bend the status line
    assert phrase(400, "bad \r\nX-Evil: 1\t\x00caf\u00e9 \u2603") == "bad ??X-Evil: 1??caf? ?"
    assert phrase(403, "a" * 500) == "a" * (responses.PHRASE_MAX - 3) + "..."
    # too long: the detail goes first, the next step stays
    text = responses.refusal_text(agent="a", host="h.test", port=80,
                                  reason=reasons.UPSTREAM_FAILED, rule=None, detail="x; " * 90)
    assert phrase(502, text) == (
        "corral: agent 'a' may not reach h.test:80 (reason upstream_failed): "
        + reasons.NEXT_STEP[reasons.UPSTREAM_FAILED])
    short = responses.refusal_text(agent="a", host="h.test", port=80,
                                   reason=reasons.UPSTREAM_FAILED, rule=None, detail="refused")
    assert phrase(502, short) == short.strip()
    assert phrase(502, " \n ") == "Bad Gateway" and phrase(599, "") == "Error"


@settings(max_examples=200, database=None)
@given(st.integers(100, 599), st.text())
def test_reason_phrase_is_always_a_valid_reason_phrase(status: int, text: str) -> None:
    out = responses.reason_phrase(status, text)
    assert re.fullmatch(r"[!-~]([ -~]*[!-~])?", out) and len(out) <= responses.PHRASE_MAX
    raw = responses.refusal(status, text, "r", keep_alive=False)
    assert raw.split(b"\r\n", 1)[0] == f"HTTP/1.1 {status} {out}".encode()


# -- TLS ClientHello
def client_hello(server_name: str | None) -> bytes:
    ctx = ssl.create_default_context()
    if server_name is None:
        ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_sni_is_read_from_a_real_client_hello() -> None:
    hello = client_hello("allowed.test")
    assert parse_client_hello(hello).name == "allowed.test"
    assert parse_client_hello(client_hello(None)).status == "no_sni"


def test_sni_needs_more_until_the_hello_is_complete() -> None:
    hello = client_hello("allowed.test")
    for cut in (1, 5, 20, len(hello) - 1):
        assert parse_client_hello(hello[:cut]).status == "more"


def test_hello_split_over_two_records() -> None:
    hello = client_hello("allowed.test")
    body = hello[5:]
    half = len(body) // 2
    rec = (hello[:3] + half.to_bytes(2, "big") + body[:half]
           + hello[:3] + (len(body) - half).to_bytes(2, "big") + body[half:])
    assert parse_client_hello(rec).name == "allowed.test"


def test_bytes_after_the_hello_do_not_matter() -> None:
    hello = client_hello("allowed.test")
    early = b"\x17\x03\x03\x00\x05hello"  # 0-RTT application data right behind it
    assert parse_client_hello(hello + early).name == "allowed.test"
    assert parse_client_hello(hello + b"\r\n").name == "allowed.test"


@pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH_9.6\r\n", b"GET / HTTP/1.1\r\n",
                                  b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00"])
def test_non_tls_is_detected(data: bytes) -> None:
    assert parse_client_hello(data).status == "not_tls"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_hello_parser_never_raises(data: bytes) -> None:
    assert parse_client_hello(b"\x16\x03\x01" + data).status in ("more", "sni", "no_sni",
                                                                   "not_tls")


# -- upstream pool bookkeeping (no sockets: a stand-in transport)
class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def resume_reading(self) -> None:
        pass


def test_pool_limits_and_cleanup() -> None:
    from corral.gateway.server import upstream as U

    pool = U.UpstreamPool()

    def fresh() -> U.Upstream:
        up = U.Upstream.__new__(U.Upstream)
        up.conn, up.pool, up.pooled, up.transport = None, pool, None, _Transport()  # type: ignore[assignment]
        return up

    key = ("a", "h.test", "1.2.3.4", 80)
    ups = [fresh() for _ in range(U.POOL_PER_KEY + 1)]
    for up in ups:
        pool.put(key, up, 0)
    assert pool.size == U.POOL_PER_KEY and ups[-1].transport.closed  # type: ignore[union-attr]
    assert pool.take(("b", "h.test", "1.2.3.4", 80)) is None  # never across agents
    ups[0].transport.closed = True  # type: ignore[union-attr]
    taken = [pool.take(key) for _ in range(U.POOL_PER_KEY)]
    assert taken[-1] is None and pool.size == 0 and not pool._idle
    pool.put(key, fresh(), 0)
    pool.expire(tick=100, idle_ticks=10)
    assert pool.size == 0 and not pool._idle


# -- framing (issue 10: smuggling); the attack suite over sockets is tests/security
def test_upstream_framing_is_rebuilt_from_the_parse() -> None:
    head = head_of(b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\ncontent-length:  3 \r\n"
                   b"X-A: 1\r\n\r\nabc")
    out = upstream_request(head, parse_target(head))
    assert out == b"POST / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n"


def test_crlf_only_data_inside_a_body_is_body() -> None:
    reader = RequestReader(16384, 100)
    reader.feed(b"POST http://a.test/ HTTP/1.1\r\nContent-Length: 4\r\n\r\n")
    assert reader.feed(b"\r\n") == [Body(b"\r\n")]
    assert reader.feed(b"\r\n") == [Body(b"\r\n"), End()]
    assert reader.feed(b"\r\n") == []  # between requests CRLFs are ignored


def test_switching_protocols_from_upstream_is_502() -> None:
    with pytest.raises(ProtocolError) as err:
        ResponseReader(head_only=False).feed(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade"
            b"\r\n\r\n")
    assert err.value.status == 502


# -- upgrades (issue 15): h2c dropped, websocket relayed, others refused with their head
def test_optional_h2c_upgrade_is_dropped_and_http1_goes_on() -> None:
    events = feed(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, "
                  b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAA\r\n\r\n"
                  b"GET http://a.test/2 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"http://a.test/", b"http://a.test/2"]
    assert sum(isinstance(e, End) for e in events) == 2 and not heads[0].upgrade
    out = upstream_request(heads[0], parse_target(heads[0]))
    assert out == b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"


def test_websocket_upgrade_is_a_request_then_a_tunnel() -> None:
    events = feed(b"GET http://a.test/ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\n"
                  b"Upgrade: WebSocket\r\nSec-WebSocket-Key: k\r\n\r\n\x81\x00")
    head = events[0]
    assert isinstance(head, RequestHead) and head.upgrade == b"websocket"
    assert isinstance(events[1], End) and events[2] == Tunnel(b"\x81\x00")
    assert upstream_request(head, parse_target(head)) == (
        b"GET /ws HTTP/1.1\r\nHost: a.test\r\nSec-WebSocket-Key: k\r\n"
        b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")


def test_other_upgrades_are_refused_with_their_head() -> None:
    with pytest.raises(ProtocolError) as err:
        feed(b"GET http://a.test/ HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: irc\r\n\r\n")
    assert err.value.status == 400 and err.value.head is not None
    assert err.value.head.target == b"http://a.test/"


def test_websocket_101_switches_only_when_asked() -> None:
    answer = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade"
              b"\r\nSec-WebSocket-Accept: x\r\n\r\n\x81\x02hi")
    r = ResponseReader(head_only=False)
    r.upgrade = b"websocket"
    out = r.feed(answer)
    assert r.switched and r.done and r.status == 101 and not r.reusable
    assert out == (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n"
                   b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi")
    with pytest.raises(ProtocolError):
        ResponseReader(head_only=False).feed(answer)


@pytest.mark.parametrize(("data", "expected"), [
    (b"GET / HTTP/1.1\r\n", True), (b"POST ", True), (b"", None), (b"GE", None),
    (b"SSH-2.0-OpenSSH", False), (b"\x16\x03\x01", False), (b"get / HTTP/1.1", False),
    (b"A" * 30, False),
])
def test_what_starts_a_request_inside_a_tunnel(data: bytes, expected: bool | None) -> None:
    assert looks_like_request(data) is expected


def test_h2c_upgrades_in_one_read_are_bounded() -> None:
    one = (b"GET http://a.test/ HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    assert sum(isinstance(e, RequestHead) for e in feed(one * 10)) == 10
    with pytest.raises(ProtocolError):
        feed(one * 65)
