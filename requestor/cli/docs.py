"""docs/cli.md, generated from the commands' own help: every group and command,
as ``golem ... --help`` shows it at a fixed width.

    python -m requestor.cli.docs docs/cli.md     # or: make cli-docs

tests/test_cli_docs.py fails when the file is not what this prints, so the
reference cannot drift from the commands.
"""

from __future__ import annotations

from pathlib import Path

import click

WIDTH = 100
HEADER = """\
# Command reference

Generated from the commands' own help by `make cli-docs` (`python -m
requestor.cli.docs docs/cli.md`); `tests/test_cli_docs.py` fails when it is
stale, so do not edit it by hand. README.md has the overview and a tour.
"""


def render() -> str:
    from requestor.cli.main import cli

    sections = [HEADER]

    def walk(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = command.make_context(
            path[-1],
            [],
            parent=parent,
            resilient_parsing=True,  # no required argument is missing when nothing is given
            terminal_width=WIDTH,
            max_content_width=WIDTH,
        )
        sections.append(f"## `{' '.join(path)}`\n\n```text\n{command.get_help(ctx)}\n```\n")
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name], ctx)

    walk(cli, ["golem"], None)
    return "\n".join(sections)


@click.command()
@click.argument("output", type=click.Path(dir_okay=False, writable=True))
def generate(output: str) -> None:
    """Write the command reference to OUTPUT (docs/cli.md)."""
    Path(output).write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    generate()
