"""Make a sink from its policy entry (corral.model.control.Sink).

The one place sink types map to classes."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp

from corral.control.sinks.base import Sink
from corral.control.sinks.http import (
    AlertmanagerSink,
    ElasticSink,
    HttpSink,
    LokiSink,
    SlackSink,
    SplunkSink,
    WebhookSink,
)
from corral.control.sinks.syslog import SyslogSink
from corral.model.control import Sink as SinkSpec

HTTP_SINKS: dict[str, type[HttpSink]] = {
    "webhook": WebhookSink, "slack": SlackSink, "splunk": SplunkSink,
    "elasticsearch": ElasticSink, "loki": LokiSink, "alertmanager": AlertmanagerSink,
}


class SinkConfigError(ValueError):
    pass


def token_for(spec: SinkSpec) -> str | None:
    """The secret from ``token_env`` or ``token_file``; a named but missing source is an error."""
    if spec.token_env:
        value = os.environ.get(spec.token_env)
        if not value:
            raise SinkConfigError(
                f"sink {spec.name}: environment variable {spec.token_env} is unset")
        return value
    if spec.token_file:
        try:
            return Path(spec.token_file).read_text().strip()
        except OSError as exc:
            raise SinkConfigError(f"sink {spec.name}: cannot read token_file: {exc}") from None
    return None


def build_sink(spec: SinkSpec, session: aiohttp.ClientSession) -> Sink:
    if spec.type == "syslog":
        assert spec.host is not None and spec.port is not None  # checked by the schema
        return SyslogSink(spec.name, spec.host, spec.port, transport=spec.transport,
                          timeout=spec.timeout_s)
    assert spec.url is not None  # checked by the schema
    cls = HTTP_SINKS[spec.type]
    return cls(spec.name, spec.url, session, timeout=spec.timeout_s, token=token_for(spec),
               index=spec.index)
