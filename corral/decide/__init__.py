"""The decide layer: the pure egress decision, its matchers and the address classifier."""
