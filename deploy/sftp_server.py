"""A small SFTP server for tests and bench/ (asyncssh): one user with a password, chrooted to a directory, on a
loopback port. Started by deploy/processes.py as its own process, so it can be stopped and paused like a real one.

    python -m deploy.sftp_server PORT ROOT USER PASSWORD HOST_KEY_FILE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncssh


def _server(user: str, password: str) -> type[asyncssh.SSHServer]:
    class PasswordServer(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True  # authentication required for everyone

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, attempt: str) -> bool:
            return username == user and attempt == password

    return PasswordServer


async def serve(port: int, root: Path, user: str, password: str, host_key: Path) -> None:
    if not host_key.exists():
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(host_key))
    await asyncssh.create_server(_server(user, password), "127.0.0.1", port, server_host_keys=[str(host_key)],
                                 sftp_factory=lambda channel: asyncssh.SFTPServer(channel, chroot=str(root)))
    await asyncio.Event().wait()


if __name__ == "__main__":
    port, root, user, password, key = sys.argv[1:6]
    asyncio.run(serve(int(port), Path(root), user, password, Path(key)))
