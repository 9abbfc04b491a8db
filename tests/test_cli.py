"""Every verb answers --help; the public surface of the package is what __all__ says."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
