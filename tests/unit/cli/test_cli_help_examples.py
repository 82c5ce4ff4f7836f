"""Every example the CLI's help prints, and every ``fieldlabel`` command in README.md, is accepted by the parser.

Examples drift when an option is renamed; argparse is the judge, so a help text cannot advertise a command that
would be a usage error. The demo example must also name the endpoint and outputs file the local demo really uses.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
from fieldlabel_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[3]


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-parser below it."""
    found = [parser]
    for action in parser._actions:  # noqa: SLF001 - argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in dict.fromkeys(action.choices.values()):
                found += _parsers(sub)
    return found


def _command(line: str) -> list[str] | None:
    """The argv of an example line ``fieldlabel ...`` (a ``# comment`` or a two-space description cut off)."""
    text = line.strip()
    if not text.startswith("fieldlabel "):
        return None
    text = re.split(r"\s#|\s{2,}", text, maxsplit=1)[0]
    return shlex.split(text)[1:]


def _help_examples() -> list[list[str]]:
    examples = []
    for p in _parsers(build_parser()):
        for line in (p.epilog or "").splitlines():
            argv = _command(line)
            if argv is not None:
                examples.append(argv)
    return examples


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            # Environment assignments and the venv path come before the program name in a shell line.
            line = re.sub(r"^(\s*[A-Z_]+=\S+\s+)*", "", line).replace(".venv/bin/fieldlabel", "fieldlabel")
            argv = _command(line)
            if argv is not None:
                commands.append(argv)
    return commands


HELP_EXAMPLES = _help_examples()
README_COMMANDS = _readme_commands()


def test_the_examples_were_found() -> None:
    # Main help, every subcommand with an epilog, and the demo upload in README's "Try it locally".
    assert len(HELP_EXAMPLES) >= 20
    assert any(argv[0] == "upload" for argv in README_COMMANDS)


@pytest.mark.parametrize("argv", HELP_EXAMPLES + README_COMMANDS, ids=lambda a: " ".join(a))
def test_example_is_a_valid_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.handler)


def test_demo_upload_example_matches_the_demo_and_readme() -> None:
    from localrun.__main__ import build_parser as demo_parser

    demo = demo_parser().parse_args([])
    expected = {"endpoint_url": f"http://127.0.0.1:{demo.port}", "outputs": str(demo.output / "outputs.json")}
    demo_examples = [a for a in HELP_EXAMPLES + README_COMMANDS if a[0] == "upload" and "--endpoint-url" in a]
    assert len(demo_examples) >= 2  # the upload help and README
    for argv in demo_examples:
        args = build_parser().parse_args(argv)
        assert {"endpoint_url": args.endpoint_url, "outputs": args.outputs} == expected, argv
