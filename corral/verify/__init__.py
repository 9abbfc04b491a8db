"""Validation on one machine: the network-namespace test bed (``netns``), later verify and drill."""
