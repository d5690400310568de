"""The validation deployed providers apply to ``POST /vms``, checked locally first
so that a bad request fails before any network call and says which rule it broke."""

from __future__ import annotations

import re
import secrets

from requestor.errors import InputError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
NAME_MIN, NAME_MAX = 3, 64
CPU_CHOICES = (1, 2, 4, 8, 16)
MEMORY_CHOICES = (1, 2, 4, 8, 16, 32, 64)
STORAGE_MIN = 10
SSH_KEY_PREFIXES = ("ssh-rsa ", "ssh-ed25519 ")
# Room for "-g" + the installation id + "-" + the random suffix that makes the
# provider-side name unique: "web-1-g1a2b3c4d-9f8e7d6c".
_SUFFIX_BYTES = 4
_INSTALLATION_LEN = 8
_PROVIDER_NAME_STEM_MAX = NAME_MAX - 2 - _INSTALLATION_LEN - 1 - 2 * _SUFFIX_BYTES
_PROVIDER_NAME = re.compile(
    r"(?P<stem>[a-z0-9][a-z0-9-]*)-g(?P<installation>[0-9a-f]{8})-[0-9a-f]{8}"
)


def check_vm_name(name: str) -> str:
    """Return ``name`` if it is a valid VM name, else raise saying which rule failed."""
    hint = (
        "Use 3 to 64 characters: lowercase letters, digits and single hyphens, "
        "starting and ending with a letter or digit (e.g. my-webserver)."
    )
    shown = name if len(name) <= 80 else name[:77] + "..."
    if not NAME_MIN <= len(name) <= NAME_MAX:
        raise InputError(
            f"Invalid VM name {shown!r}: must be {NAME_MIN} to {NAME_MAX} characters long "
            f"(it has {len(name)})",
            hint,
        )
    if not NAME_PATTERN.fullmatch(name):
        raise InputError(
            f"Invalid VM name {shown!r}: only lowercase letters, digits and hyphens, "
            "starting and ending with a letter or digit",
            hint,
        )
    if "--" in name:
        raise InputError(f"Invalid VM name {shown!r}: must not contain '--'", hint)
    return name


def check_resources(cpu: int, memory: int, storage: int) -> None:
    if cpu not in CPU_CHOICES:
        raise InputError(
            f"Invalid --cpu {cpu}: providers accept one of {', '.join(map(str, CPU_CHOICES))}",
            "Pick a CPU count from that list.",
        )
    if memory not in MEMORY_CHOICES:
        raise InputError(
            f"Invalid --memory {memory}: providers accept one of "
            f"{', '.join(map(str, MEMORY_CHOICES))} (GB)",
            "Pick a memory size from that list.",
        )
    if storage < STORAGE_MIN:
        raise InputError(
            f"Invalid --storage {storage}: providers need at least {STORAGE_MIN} GB",
            f"Ask for {STORAGE_MIN} GB or more.",
        )


def check_ssh_key(public_key: str) -> None:
    if not public_key.startswith(SSH_KEY_PREFIXES):
        raise InputError(
            "The SSH public key must be an ssh-ed25519 or ssh-rsa key",
            "Use an ed25519 or RSA key, or remove the other key so golem generates one.",
        )


def provider_vm_name(local_name: str, installation: str) -> str:
    """A fresh provider-side name: the local name, this installation's id, and a
    random suffix.

    The provider keys VMs by name across all of its requestors, and a second
    create with a taken name orphans the first VM, so a name is never reused. The
    installation id marks the VM as ours, so it can be found again without a record.
    """
    stem = local_name[:_PROVIDER_NAME_STEM_MAX].rstrip("-")
    return f"{stem}-g{installation}-{secrets.token_hex(_SUFFIX_BYTES)}"


def parse_provider_vm_name(name: str) -> tuple[str, str] | None:
    """(stem, installation id) of a name ``provider_vm_name`` made; None for any
    other name (older records, other requestors' VMs)."""
    found = _PROVIDER_NAME.fullmatch(name)
    if found is None:
        return None
    return found["stem"], found["installation"]
