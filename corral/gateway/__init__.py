"""The egress gateway: every agent's outbound HTTP(S) goes through here.

Data flow: ``server`` accepts a connection on an agent's listener port (the port is the identity),
``protocol`` turns bytes into request heads (sans-io), ``steps`` decide, guard, limit and log each
request in one ordered list, and ``server`` relays the bytes. ``app`` wires processes, signals,
reload and the admin port; ``testing`` starts a gateway for tests.
"""
