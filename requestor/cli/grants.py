"""``golem vm grant`` and ``golem vm revoke``: parse, call the grants service
(``requestor.services.grants``), render its report, return it.

Only click is imported at module level; the services load when a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from requestor.cli.context import AppContext
from requestor.cli.params import json_option, vm_selection
from requestor.cli.vm import SELECTION_HELP, run_with_services
from requestor.errors import GolemError

if TYPE_CHECKING:
    from requestor.services.grants import GrantReport

pass_app = click.make_pass_decorator(AppContext)

KEY_HELP = """
\b
Whose key:
  --key PUBKEY   an OpenSSH public key line ('ssh-ed25519 AAAA... comment', quoted)
                 or the path of a .pub file
  --user USER    every key recorded for USER: a teammate's golem records their
                 key in a shared database when it uses it (e.g. 'golem vm ssh')
"""


def _grant_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--key", metavar="PUBKEY", help="A public key line, or a .pub file."),
        click.option("--user", metavar="USER", help="Every key recorded for this user."),
        json_option("One object per VM (docs/json.md)."),
    ]
    for option in reversed(options):
        func = option(func)
    return vm_selection(func)


def _change(
    app: AppContext,
    action_name: str,
    names: tuple[str, ...],
    all_vms: bool,
    provider_id: str | None,
    key: str | None,
    user: str | None,
    as_json: bool,
) -> GrantReport | None:
    from requestor.cli import render
    from requestor.services.actions import check_selection
    from requestor.services.grants import GrantAction, change_access, check_whose

    check_selection(names, all_vms=all_vms, provider_id=provider_id)  # before anything
    check_whose(key, user)
    action = GrantAction(action_name)
    report = run_with_services(
        app,
        lambda services: change_access(
            services,
            action,
            names,
            key=key,
            user=user,
            all_vms=all_vms,
            provider_id=provider_id,
            on_note=lambda note: render.selection_note(app.err_console, note),
        ),
    )
    if report is None:
        render.nothing_selected(app.err_console, as_json)
        return None
    if len(report.outcomes) == 1 and not as_json:
        outcome = report.outcomes[0]
        if not outcome.ok:
            raise GolemError(outcome.error or f"{action.value} failed", outcome.hint)
    render.report(app.console, report, as_json)
    return report


@click.command(
    help="Let a teammate's SSH key into VMs: add it to each VM's ~/.ssh/authorized_keys.\n"
    "\n"
    "golem connects with this machine's key, adds the key (once), and records the\n"
    "grant in local state; a VM that fails does not stop the others.\n" + KEY_HELP + SELECTION_HELP,
    short_help="Let a teammate's SSH key into VMs.",
)
@_grant_options
@pass_app
def grant(app: AppContext, /, **options: Any) -> GrantReport | None:
    return _change(app, "grant", **options)


@click.command(
    help="Take a granted SSH key out of VMs: remove it from each VM's\n"
    "~/.ssh/authorized_keys and from local state. The key a VM was created with\n"
    "cannot be revoked (destroy the VM instead); a key never granted is left alone.\n"
    + KEY_HELP
    + SELECTION_HELP,
    short_help="Take a granted SSH key out of VMs.",
)
@_grant_options
@pass_app
def revoke(app: AppContext, /, **options: Any) -> GrantReport | None:
    return _change(app, "revoke", **options)
