"""Sinks: where incidents (and, for ``send: events`` sinks, events) leave corral.

base.py is the one-method seam (``emit(batch)``, ``aclose()``) plus the mock sink for tests;
queue.py the disk-backed queue each sink drains; deliver.py the retry loop between them;
http.py and syslog.py the real protocols; build.py makes a sink from its policy entry.
"""
