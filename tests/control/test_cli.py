"""`corral serve` / `corral release` argument handling, and agent attribution by corral's own
compiled rule names (what `corral render` gives Falco)."""

from __future__ import annotations

from pathlib import Path

from corral.cli import main
from corral.cli.serve import known_rules
from corral.compile import falco
from tests.control.conftest import PlaneFactory, body, falco_event, policy, run


def test_strict_rules_accept_corral_rules_and_named_files(tmp_path: Path) -> None:
    pol = policy()
    assert known_rules(pol, [], strict=False) == frozenset()
    compiled = set(falco.rule_names(pol))
    assert compiled and known_rules(pol, [], strict=True) == compiled
    rules = tmp_path / "falco_rules.yaml"
    rules.write_text("- macro: m\n  condition: evt.type=open\n"
                     "- rule: Terminal shell in container\n  condition: m\n  output: x\n"
                     "  priority: NOTICE\n")
    assert known_rules(pol, [str(rules)], strict=False) == compiled | {
        "Terminal shell in container"}


def test_alert_of_a_compiled_rule_names_its_agent(make_plane: PlaneFactory) -> None:
    async def go() -> None:
        pol = policy()
        plane = make_plane(pol, known_rules=frozenset(falco.rule_names(pol)))
        await plane.start(background=False)
        name = next(n for n in falco.rule_names(pol) if n.endswith("[coder]"))
        res = plane.ingest_falco(body(falco_event(rule=name, labels=None, pod="p-1")))
        assert res.accepted == 1
        assert plane.ingest_falco(body(falco_event(rule="Other"))).rejected[0]["reason"] == \
            "unknown_rule"
        plane.tick()
        [inc] = plane.store.incidents()
        assert inc["agent"] == "coder"
        await plane.aclose()
    run(go())


def test_release_without_a_running_control_plane_exits_2(capsys: object) -> None:
    assert main(["release", "research", "--server", "http://127.0.0.1:9", "--timeout", "2"]) == 2


def test_serve_refuses_a_bad_listen_address(tmp_path: Path) -> None:
    pol = tmp_path / "corral.yaml"
    pol.write_text((Path(__file__).parents[2] / "examples" / "corral.yaml").read_text())
    assert main(["serve", "-f", str(pol), "--listen", "nonsense"]) == 2
