"""Ingest: turn bytes from Falco and the gateway into ``Event`` values (or say why not)."""
