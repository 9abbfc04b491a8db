"""The control plane takes a tunnel's decision from its open line only: progress and close lines
of a would-deny tunnel go to the behaviour store (their bytes) and raise no event; a line with
an unknown ``event`` is refused as a bad field."""

from __future__ import annotations

from corral.model import records as R
from tests.control.conftest import PlaneFactory, access, body, run


def test_a_tunnel_is_one_event_and_a_bad_event_field_is_refused(
        make_plane: PlaneFactory) -> None:
    async def go() -> None:
        plane = make_plane()
        await plane.start(background=False)
        lines = [access("would_deny", agent="coder") | {R.EVENT: event, R.FLOW: "f-1"}
                 for event in (R.EVENT_OPEN, R.EVENT_PROGRESS, R.EVENT_PROGRESS, R.EVENT_CLOSE)]
        lines += [access("allow") | {R.EVENT: event, R.FLOW: "f-2"}
                  for event in (R.EVENT_OPEN, R.EVENT_CLOSE)]
        res = plane.ingest_gateway(body(*lines, access() | {R.EVENT: "middle"}))
        assert res.accepted == 6 and [r["reason"] for r in res.rejected] == ["bad_field"]
        assert "expected one of request, open, progress, close" in res.rejected[0]["error"]
        plane.tick()
        events = {a["name"]: a["events"] for a in plane.agents()}
        assert events["coder"] == {"gateway": 1}
        assert plane.metrics.registry.get_sample_value(
            "corral_control_events_total", {"source": "gateway_allow"}) == 1
        await plane.aclose()
    run(go())
