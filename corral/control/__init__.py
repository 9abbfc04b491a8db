"""The control plane (``corral serve``): runtime events in, few actionable incidents out.

Data flow: ingest/ (Falco ``http_output`` JSON, gateway access-log lines, pushed or tailed) ->
processors/ (enrich -> dedup -> group -> respond -> route, one small step each over one
``Event``) -> incidents (store.py, SQLite WAL) -> sinks/ (disk-backed queues, one per sink) and
response.py (quarantine: gateway admin API, Kubernetes pod label). server.py is the only module
that owns listening sockets; app.py wires the pieces.
"""
