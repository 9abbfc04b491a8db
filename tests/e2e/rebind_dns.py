"""A DNS-rebinding server for the test bed: a name answers public first, private afterwards.

Where it sits: runs in the ``inet`` namespace behind dnsmasq, which forwards the rebinding
domain here (``--server=/rebind.test/IP#PORT``). dnsmasq cannot change an answer between queries,
which is the whole trick of rebinding: the first A query for a name gets ``FIRST`` and every
later one gets ``THEN``, always with TTL 0 so nobody may cache the first answer.

Usage: ``python rebind_dns.py LISTEN_IP PORT FIRST THEN``. Prints ``ready`` once bound and one
line per query. Built on dnspython (message parsing and building), not by hand.
"""

from __future__ import annotations

import signal
import socket
import sys

import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def answer(query: dns.message.Message, address: str) -> dns.message.Message:
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    q = query.question[0]
    if q.rdtype == dns.rdatatype.A:
        reply.answer.append(dns.rrset.from_text(q.name, 0, dns.rdataclass.IN, dns.rdatatype.A,
                                                address))
    return reply


def main() -> None:
    listen, port, first, then = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((listen, port))
    print("ready", flush=True)
    seen: set[str] = set()
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(data)
        except Exception as exc:  # a bad packet is logged and dropped
            print(f"bad query from {peer}: {exc}", flush=True)
            continue
        name = query.question[0].name.to_text().lower() if query.question else ""
        is_a = bool(query.question) and query.question[0].rdtype == dns.rdatatype.A
        address = then if (is_a and name in seen) else first
        if is_a:
            seen.add(name)
        kind = dns.rdatatype.to_text(query.question[0].rdtype) if query.question else "-"
        print(f"query {name} {kind} -> {address if is_a else 'empty'}", flush=True)
        sock.sendto(answer(query, address).to_wire(), peer)


if __name__ == "__main__":
    main()
