"""Validation: the network-namespace test bed (``netns``) and, built on it, verify, drill and audit.

Where it sits: above gateway, control and learn (it runs them as processes in namespaces or
against a cluster); nothing below imports it.
"""
