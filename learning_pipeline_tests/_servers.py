"""Starting real servers for tests: free loopback ports and waiting until a server answers."""

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(
    url: str, proc: subprocess.Popen, timeout_seconds: float = 180, describe=lambda: ""
) -> None:
    """Poll `url` until it answers 200; fail with the server's output if it exits or never answers."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before answering {url}\n{describe()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not answer {url} within {timeout_seconds:.0f} s\n{describe()}")
        time.sleep(0.5)
