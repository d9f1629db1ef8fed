"""An API server run as a child process: a free port, waiting until it answers, stopping it.

`nbatlas report` and `nbatlas inspect` start a private `nbatlas serve` this way (they are clients
of the API like any analysis script), and so do the tests and the API benchmark.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time


class ServerNotServing(RuntimeError):
    """The server process exited, or did not answer its health check in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen, base: str, timeout: float) -> None:
    """Return once ``base``/health answers 200; raise ServerNotServing if ``proc`` ends or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerNotServing(f"the server exited with code {proc.returncode} before answering {base}/health")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise ServerNotServing(f"the server did not answer {base}/health within {timeout:.0f} s")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a person would (uvicorn shuts down cleanly); killed if it has not ended in 20 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
