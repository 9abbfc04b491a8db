"""Behaviour learning and the weekly review: ingest into the store, build the report, suggest
and apply policy changes. Sits above ``store``/``decide``/``model``; called by ``cli``."""
