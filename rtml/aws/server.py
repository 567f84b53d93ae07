"""The local AWS emulator: a moto server that rtml starts, tracks and stops.

moto implements AWS's APIs (Kinesis, EventBridge, SQS, ...) in one Python process, so the
course runs its AWS sections with no account and no network. rtml starts it as an owned
background process on a free 127.0.0.1 port and records the address in the cluster folder,
where every rtml client finds it.

The clients rtml creates carry fixed fake credentials and a fixed region of their own:
they never read, and never need, the user's AWS configuration, and they can reach nothing
but the emulator.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from botocore.config import Config

from rtml.aws.errors import AwsError
from rtml.cluster.process import OwnedProcess
from rtml.config import Settings
from rtml.poll import WaitTimeout, until

REGION = "us-east-1"
# moto accepts any credentials; these name themselves as fake so nobody mistakes them.
ACCESS_KEY = "rtml-local-fake-key"
SECRET_KEY = "rtml-local-fake-secret"  # not a secret: moto checks nothing
_MARKER = "moto.server"


@dataclass(frozen=True)
class MotoStatus:
    """Whether the emulator runs, and where."""

    running: bool
    endpoint: str | None
    pid: int | None

    def sentence(self) -> str:
        """The status as one line."""
        if self.running:
            return f"moto (local AWS emulator) UP at {self.endpoint}, pid {self.pid}."
        return "moto (local AWS emulator) DOWN: start it with `rtml aws up`."


class MotoServer:
    """The moto server of one rtml cluster folder: start, status, stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = settings.cluster_dir / "aws"
        self.port_file = self.folder / "moto.port"
        self.process = OwnedProcess(self.folder / "moto.pid", _MARKER)

    @property
    def endpoint(self) -> str | None:
        """http://127.0.0.1:<port> of the running server, else None."""
        if not self.process.alive():
            return None
        try:
            return f"http://127.0.0.1:{int(self.port_file.read_text())}"
        except (OSError, ValueError):
            return None

    def up(self, timeout: float = 60.0) -> str:
        """Start the server (unless it runs) and wait until it answers; return its endpoint."""
        running = self.endpoint
        if running is not None:
            return running
        port = _free_port()
        cmd = [sys.executable, "-m", _MARKER, "-H", "127.0.0.1", "-p", str(port)]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process.start(cmd, log=self.folder / "moto.log", cwd=self.folder)
        self.port_file.write_text(str(port))
        endpoint = f"http://127.0.0.1:{port}"
        try:
            until(lambda: _answers(endpoint) or not self.process.alive(), timeout, "moto")
        except WaitTimeout:
            self.down()
            raise AwsError(
                f"moto did not answer at {endpoint} within {timeout:g} s; its log is "
                f"{self.folder / 'moto.log'}."
            ) from None
        if not self.process.alive():
            raise AwsError(f"moto exited at start; its log is {self.folder / 'moto.log'}.")
        return endpoint

    def down(self) -> bool:
        """Stop the server; True if one was running. moto keeps everything in memory, so
        every stream, bus and queue goes with it."""
        was = self.process.alive()
        self.process.stop(timeout=10)
        self.port_file.unlink(missing_ok=True)
        return was

    def status(self) -> MotoStatus:
        """Whether it runs, and where."""
        endpoint = self.endpoint
        return MotoStatus(endpoint is not None, endpoint, self.process.pid)

    def require(self) -> str:
        """The endpoint of the running, answering server, or one clear sentence why not."""
        endpoint = self.endpoint
        if endpoint is None or not _answers(endpoint):
            raise AwsError(
                "The local AWS emulator (moto) is not running: start it with `rtml aws up`."
            )
        return endpoint


@contextmanager
def running(settings: Settings) -> Iterator[str]:
    """A moto server for the `with` block (a test, a notebook section): its endpoint; it is
    stopped when the block ends, whatever happens inside."""
    server = MotoServer(settings)
    try:
        yield server.up()
    finally:
        server.down()


def client(endpoint: str, service: str) -> Any:
    """A boto3 client of `service` on the emulator at `endpoint`, with rtml's fake
    credentials and region (the user's AWS configuration plays no part)."""
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)
    return session.client(service, endpoint_url=endpoint, config=config)


def _answers(endpoint: str) -> bool:
    try:
        return httpx.get(f"{endpoint}/moto-api/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    """A port nothing listens on now (the OS picks it); the server binds it at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
