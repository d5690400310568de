"""The floor for ``golem vm ssh NAME -- true``: a bare asyncssh client, run as its own
Python process by bench.targets. It connects with the same key and checks the same
pinned host key (an OpenSSH known_hosts file), runs ``true`` and exits with its status;
nothing else is imported.

    python bench/_bare_ssh.py HOST PORT USER KEY_PATH KNOWN_HOSTS_PATH
"""

import asyncio
import sys

import asyncssh


async def main(host: str, port: str, user: str, key: str, known_hosts: str) -> int:
    async with asyncssh.connect(
        host,
        int(port),
        username=user,
        client_keys=[key],
        known_hosts=known_hosts,
        config=None,
        agent_path=None,
    ) as conn:
        result = await conn.run("true")
    return result.exit_status or 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:6])))
