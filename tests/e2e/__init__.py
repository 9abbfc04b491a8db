"""End-to-end tier: the gateway and the test bed in Linux network namespaces (root)."""
