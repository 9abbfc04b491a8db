"""Every verb answers --help; the public surface of the package is what __all__ says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import corral
from corral.cli import COMMANDS, main


@pytest.mark.parametrize("verb", COMMANDS)
def test_help_on_every_verb(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([verb, "--help"])
    assert info.value.code == 0
    assert verb in capsys.readouterr().out


def test_top_level_help_lists_every_verb() -> None:
    out = subprocess.run([sys.executable, "-m", "corral", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for verb in COMMANDS:
        assert verb in out


def test_unknown_verb_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_exported_members() -> None:
    assert set(corral.__all__) == {
        "Decision", "EgressRequest", "Policy", "PolicyError", "Problem", "__version__",
        "decide", "load_policy",
    }
    for name in corral.__all__:
        assert hasattr(corral, name)


def test_validate_exit_codes(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path
    example = Path(__file__).parents[1] / "examples" / "corral.yaml"
    assert main(["validate", "-f", str(example)]) == 0
    assert main(["validate", "-f", str(example), "--strict"]) == 1  # learn-mode warning
    bad = Path(str(tmp_path)) / "bad.yaml"
    bad.write_text("apiVersion: corral.dev/v1alpha1\nkind: Policy\n")
    assert main(["validate", "-f", str(bad), "-o", "json"]) == 2


def test_schema_describes_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from pathlib import Path

    import jsonschema
    import yaml

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    example = yaml.safe_load((Path(__file__).parents[1] / "examples" / "corral.yaml").read_text())
    jsonschema.validate(example, schema)
    example["spec"]["agents"][0]["egress"]["mode"] = "enforced"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)


EXAMPLE = Path(__file__).parents[1] / "examples" / "corral.yaml"


def test_no_arguments_lists_the_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(verb in err for verb in COMMANDS)


def test_validate_takes_the_file_as_an_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    assert "2 agents (" in capsys.readouterr().out
    assert main(["validate", str(EXAMPLE), "-f", "other.yaml"]) == 2
    assert "once" in capsys.readouterr().err


def test_one_summary_says_1_agent_1_warning(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["agents"] = [a for a in doc["spec"]["agents"] if a["egress"]["mode"] == "learn"]
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(one)]) == 0
    assert "1 agent (" in capsys.readouterr().out
    assert main(["render", "-f", str(one), "-o", f"{tmp_path}/out/"]) == 0
    out = capsys.readouterr().out
    assert "(1 agent)" in out and "//" not in out and f"{tmp_path}/out/network/:" in out


@pytest.mark.parametrize("verb", ["validate", "render", "check", "gateway", "serve", "up",
                                  "images", "threats", "topology", "review", "verify", "drill",
                                  "run"])
def test_every_verb_reads_the_same_default_policy(verb: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """No -f: every verb reads ./corral.yaml and says the same thing when it is missing."""
    monkeypatch.chdir(tmp_path)
    extra = {"verify": ["--local"], "drill": ["--local"], "run": ["--agent", "a", "--", "true"],
             "check": [str(tmp_path)], "review": ["--store", str(tmp_path / "s.db")],
             "render": ["-o", str(tmp_path / "out")]}
    assert main([verb, *extra.get(verb, [])]) == 2
    err = capsys.readouterr().err
    assert "policy file 'corral.yaml' not found" in err and "examples/corral.yaml" in err
