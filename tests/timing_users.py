"""Measure app.users.Authenticator: unknown login vs wrong password (and the cached path), medians of N each.

    .venv/bin/python tests/timing_users.py [N]

Prints numbers only; timings are never asserted in tests (they depend on the machine).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.users import Authenticator, User, UserDirectory, hash_password, save_users  # noqa: E402


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.2f} ms (min {min(samples) * 1000:.2f}, max {max(samples) * 1000:.2f})"


def main(n: int = 30) -> None:
    with tempfile.TemporaryDirectory() as home:
        users_file = Path(home) / "users.toml"
        save_users(users_file, [User("alice", hash_password("right"), frozenset({"migration_access"}))])
        auth = Authenticator(UserDirectory(users_file))
        auth.authenticate("warm-up", "x")  # load the users file once
        runs: dict[str, list[float]] = {"unknown user": [], "wrong password": [], "right password (cached)": []}
        auth.authenticate("alice", "right")
        for i in range(n):  # interleaved, so drift (CPU frequency, other load) hits both alike
            for label, login, password in (("unknown user", f"nobody{i}", f"guess{i}"),
                                           ("wrong password", "alice", f"guess{i}"),
                                           ("right password (cached)", "alice", "right")):
                started = time.perf_counter()
                auth.authenticate(login, password)
                runs[label].append(time.perf_counter() - started)
        for label, samples in runs.items():
            print(f"{label:>24}: median {median_ms(samples)}, N={n}")
        gap = statistics.median(runs["wrong password"]) - statistics.median(runs["unknown user"])
        print(f"{'wrong - unknown':>24}: {gap * 1000:+.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
