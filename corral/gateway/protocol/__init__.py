"""Sans-io protocol pieces of the gateway: HTTP heads (httptools), TLS ClientHello SNI, responses.

Nothing here touches a socket or an event loop; ``server`` feeds bytes in and writes bytes out.
"""
