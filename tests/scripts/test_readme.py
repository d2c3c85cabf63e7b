"""The README stays a guide a newcomer reads in one sitting, and every command it lists exists."""

from pathlib import Path

from vitmae.cli.parser import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_is_at_most_200_lines():
    assert len(README.read_text().splitlines()) <= 200


def test_every_command_of_the_cli_is_in_the_readme_table():
    text = README.read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    missing = [c for c in commands if f"`vitmae {c}" not in text]
    assert not missing, missing
