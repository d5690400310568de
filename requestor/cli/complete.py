"""Shell completion: ``golem completion bash|zsh|fish`` and the completers of VM
names and provider ids.

click's own machinery does the work (``_GOLEM_COMPLETE=bash_complete golem ...``,
called by the printed script on every Tab): commands and options come from the
command tree, values from the ``shell_complete`` functions here. They read local
state only (requestor.services.completion): no network call, and none of
SQLAlchemy, aiohttp or asyncssh is imported (tests/test_startup.py checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from requestor.settings import Settings

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_GOLEM_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
    Completes commands, options, your VM names and the provider ids of the last
    'golem vm providers', from local state only (no network call).
      bash:  echo 'eval "$(golem completion bash)"' >> ~/.bashrc
      zsh:   echo 'eval "$(golem completion zsh)"' >> ~/.zshrc
      fish:  golem completion fish > ~/.config/fish/completions/golem.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    if completer is None:  # click knows every name in SHELLS
        raise click.BadParameter(f"no completion for {shell}")
    root = ctx.find_root().command
    click.echo(completer(root, {}, "golem", COMPLETE_VAR).source())


def _settings() -> Settings | None:
    from requestor.errors import GolemError
    from requestor.settings import load_settings

    try:
        return load_settings()
    except GolemError:
        return None  # a bad setting: nothing to offer; the command itself will say why


def vm_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Names of the VMs in local state that start with what was typed."""
    from click.shell_completion import CompletionItem

    from requestor.services.completion import vm_names as names

    settings = _settings()
    if settings is None:
        return []
    return [CompletionItem(name) for name in names(settings) if name.startswith(incomplete)]


def provider_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Provider ids discovery listed last time (``golem vm providers``)."""
    from click.shell_completion import CompletionItem

    from requestor.services.completion import seen_provider_ids

    settings = _settings()
    if settings is None:
        return []
    return [
        CompletionItem(pid) for pid in seen_provider_ids(settings) if pid.startswith(incomplete)
    ]


def copy_endpoints(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """``cp``: NAME: for VMs whose name starts with what was typed, else local files."""
    from click.shell_completion import CompletionItem

    if ":" in incomplete:
        return []  # a path on the VM: completing it would need a connection
    found = [CompletionItem(f"{item.value}:") for item in vm_names(ctx, param, incomplete)]
    return found or [CompletionItem(incomplete, type="file")]
