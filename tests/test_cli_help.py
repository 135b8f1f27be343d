"""The `accelnn` command's help shows every option's default and describes every
subcommand."""

from __future__ import annotations

import re

import pytest

from accelnn.cli import main


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _options(text: str) -> dict[str, str]:
    """Each option of a help text ('--epochs') with its description."""
    body = text.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", "\n" + body)
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries
            if entry.strip().startswith("-")}


@pytest.mark.parametrize("command", ["info", "demo", "train", "predict"])
def test_every_option_shows_its_default(capsys, command):
    text = _help(capsys, command)
    usage, _, rest = text.partition("\n\n")
    assert rest.split("\n\n")[0].strip() and not rest.startswith("options:"), \
        f"{command} has no description"
    for option, entry in _options(text).items():
        if option != "-h":
            assert "default" in entry, f"accelnn {command} {option}: {entry}"


def test_train_help_names_the_defaults(capsys):
    options = _options(_help(capsys, "train"))
    assert "(default: 30)" in options["--epochs"]
    assert "(default: model.npz)" in options["--output"]
    assert "(default: refuse)" in options["--force"]
    assert "(default: standardize them)" in options["--no-standardize"]
    demo = _options(_help(capsys, "demo"))
    assert "(default: 10000)" in demo["--epochs"] and "(default: 1.2)" in demo["--lr"]
