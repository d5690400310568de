"""One error hierarchy for the whole tool.

Every failure a user can meet is a ``GolemError`` with a one-line message, an
optional ``Solution:`` hint, and an exit code. The click layer
(``requestor.cli.main``) is the only place that turns them into output and exit
codes. This module imports nothing heavy: it is loaded on every command.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; documented in README.md ("Exit codes")."""

    OK = 0
    FAILED = 1  # the operation failed
    USAGE = 2  # bad input: arguments, names, numbers, settings
    PARTIAL = 3  # a multi-VM command where some VMs succeeded and some failed
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE, as Unix tools)


class GolemError(Exception):
    """Base of every error shown to a user as ``Error: ...`` plus ``Solution: ...``.

    ``code`` is the stable name a script sees in ``--json`` errors (docs/json.md):
    the class name in snake case without "Error" (VMGoneError: ``vm_gone``), so a
    new class gets one without a second table to keep in step.
    """

    exit_code: ExitCode = ExitCode.FAILED
    default_hint: str | None = None
    code: str = "failed"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = _snake(cls.__name__.removesuffix("Error"))

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint


def _snake(name: str) -> str:
    """VMGone -> vm_gone, SSHAuth -> ssh_auth, ProviderNotFound -> provider_not_found."""
    out: list[str] = []
    for i, char in enumerate(name):
        follows_lower = i > 0 and name[i - 1].islower()
        ends_acronym = 0 < i < len(name) - 1 and name[i - 1].isupper() and name[i + 1].islower()
        if char.isupper() and (follows_lower or ends_acronym):
            out.append("_")
        out.append(char.lower())
    return "".join(out)


class Declined(Exception):
    """The user answered no at a confirmation prompt: nothing was done, which is
    what they chose (exit 0). Not a GolemError: nothing failed."""


# --- input and configuration -------------------------------------------------


class InputError(GolemError):
    """The user gave something we refuse before any network call."""

    exit_code = ExitCode.USAGE


class ConfigError(InputError):
    """An environment variable or setting has an unusable value."""


class NameTakenError(InputError):
    default_hint = "Choose another name, or see your VMs with 'golem vm list'."


class CreateInterruptedError(GolemError):
    """Ctrl-C during a create; the message says what was kept."""

    exit_code = ExitCode.INTERRUPTED


# --- local state --------------------------------------------------------------


class StateError(GolemError):
    """The local database cannot be used (corrupt, newer schema, unwritable)."""


class NothingMatchedError(InputError):
    """A VM selection (names, globs, --provider) that matches no VM in local state:
    the same error, whatever the reason, so scripts can rely on one exit code."""

    # The spec's wording for a VM that is not in local state.
    default_hint = (
        "The VM may have been manually removed. Use 'golem vm list' to see available VMs."
    )


class DatabaseLockedError(StateError):
    """Another process kept the database's write lock beyond the wait."""


class UnrecordedActionsError(StateError):
    """Providers did what was asked, but the database stayed locked: the user must
    learn what happened and how to record it."""

    default_hint = (
        "Run 'golem vm list --refresh' once the other golem command has finished:"
        " it records what the providers hold."
    )


class VMNotFoundError(GolemError):
    default_hint = (
        "The VM may have been manually removed. Use 'golem vm list' to see available VMs."
    )

    def __init__(self, name: str, hint: str | None = None) -> None:
        super().__init__(f"VM not found in local database: {name}", hint)
        self.name = name


# --- network: discovery and providers ----------------------------------------


class NetworkError(GolemError):
    """Base of failures talking to discovery or a provider."""


class DiscoveryUnavailableError(NetworkError):
    default_hint = (
        "Check GOLEM_REQUESTOR_DISCOVERY_URL and your network connection, then try again."
    )


class ProviderNotFoundError(NetworkError):
    default_hint = "Run 'golem vm providers' to see the providers that advertise now."


# The spec's wording, shown by every path that finds a provider not answering.
PROVIDER_GONE_MESSAGE = "Provider is no longer available (they may have gone offline)"


class ProviderUnavailableError(NetworkError):
    default_hint = "Choose a different provider or wait for the original to come back online."


class ProviderRefusedError(NetworkError):
    """The provider answered, and said no (its detail is in the message, escaped)."""

    default_hint = "Check the request, or try a different provider."
    status: int | None = None  # the HTTP status of the refusal, when there was one


class ProviderProtocolError(NetworkError):
    """The provider's answer does not fit the wire contract."""

    default_hint = "The provider may run an incompatible version; try a different provider."


class InsufficientResourcesError(NetworkError):
    default_hint = (
        "Ask for fewer resources, or pick a provider with more free capacity "
        "('golem vm providers --cpu N --memory GB --storage GB')."
    )


class PaymentRequiredError(NetworkError):
    """The provider creates VMs only against a payment stream, which golem cannot open yet."""

    default_hint = (
        "Choose another provider ('golem vm providers' marks the ones that require "
        "payment), or leave out --provider-id: the automatic choice skips providers "
        "that require payment."
    )


class ProviderIdentityError(NetworkError):
    """The node at an advertised address says it is another provider."""

    default_hint = (
        "The advertisement points at someone else's provider: choose a different provider."
    )


class UnsupportedOperationError(NetworkError):
    """The provider lacks a route (e.g. many deployed providers cannot start a VM)."""


class VMGoneError(NetworkError):
    """The provider no longer knows the VM. Raise it with ``forget_hint(name)`` as
    the hint where the VM's name is known; the default names no VM."""

    default_hint = "Remove the local record with 'golem vm forget', or create a new VM."


def forget_hint(name: str) -> str:
    """The hint for a VM its provider no longer knows: the command, with its name."""
    return f"Remove the local record with 'golem vm forget {name}', or create a new VM."


# --- SSH ------------------------------------------------------------------------


class SSHError(GolemError):
    """Base of SSH failures."""


class SSHUnreachableError(SSHError):
    default_hint = "Wait a few moments and try again. The VM is likely still initializing."

    def __init__(
        self,
        message: str = "Unable to establish SSH connection (VM may be starting up)",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint)


class SSHAuthError(SSHError):
    default_hint = "Make sure the key that created the VM is still in place (see 'golem vm list')."


class AccessNotGrantedError(SSHError):
    """This machine holds no key the VM trusts: neither the key it was created with
    nor one granted on it (``golem vm grant``). The message says who can grant."""


class HostKeyChangedError(SSHError):
    """The VM shows a host key other than the one pinned at its first connection."""


class GolemWarning(UserWarning):
    """Something went wrong beside a command that otherwise succeeded (e.g. the
    written ssh config could not be refreshed). Services raise it with
    ``warnings.warn``; the root group prints ``Warning: ...`` and the hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
