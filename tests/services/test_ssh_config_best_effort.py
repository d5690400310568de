"""The written ssh config follows state changes, but a failure to rewrite it never
turns a committed change into a failed command: it is a warning."""

from __future__ import annotations

import sqlite3

from tests.conftest import GolemEnv, assert_ok, run_golem
from tests.helpers import db_rows


def _add_vm_row(golem_env: GolemEnv, name: str) -> None:
    connection = sqlite3.connect(golem_env.db_path)
    try:
        connection.execute(
            "INSERT INTO vms (name, provider_ip, provider_vm_name, cpu, memory, storage, "
            "status, ssh_user, created_at, updated_at) VALUES (?, '127.0.0.1', ?, 1, 1, 10, "
            "'gone', 'ubuntu', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            (name, f"{name}-x"),
        )
        connection.commit()
    finally:
        connection.close()


def test_an_unwritable_ssh_config_is_a_warning_not_a_failure(golem_env: GolemEnv) -> None:
    assert_ok(run_golem(golem_env, "vm", "list"))
    _add_vm_row(golem_env, "old-vm")
    assert_ok(run_golem(golem_env, "vm", "ssh-config", "--write"))
    known_hosts = golem_env.ssh_dir / "known_hosts"
    known_hosts.unlink()
    known_hosts.mkdir()  # the rewrite's final rename now fails

    done = run_golem(golem_env, "vm", "forget", "old-vm", "--force")
    assert done.returncode == 0, done.stderr
    assert "old-vm" not in db_rows(golem_env.db_path)  # the change itself was made
    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1, done.stderr
    assert "ssh config" in warnings[0] and "was not updated" in warnings[0]
    assert "golem vm ssh-config --write" in done.stderr
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr
