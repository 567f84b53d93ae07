"""A small client for the Kafka Connect REST API: every call rtml makes to a worker.

Connect answers errors as JSON `{"error_code": ..., "message": ...}`; each one becomes a
`ConnectError` carrying the worker's own message, so the CLI prints one sentence.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx

from rtml.errors import RtmlError


class ConnectError(RtmlError):
    """The Connect worker is down, refused a request, or failed to start.

    `status_code` is the HTTP status of a refused request (404: no such connector, or no
    status written for it yet), None for every other failure.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ConnectClient:
    """The REST API of the Connect worker at `url` (for example http://127.0.0.1:8083)."""

    def __init__(
        self, url: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._transport = transport  # tests pass an httpx.MockTransport

    def info(self) -> dict[str, Any]:
        """The worker's version, commit and Kafka cluster id (GET /)."""
        return self._call("GET", "/")

    def health(self) -> dict[str, Any]:
        """200 once the worker has started and joined its group; 503 while it is starting."""
        return self._call("GET", "/health")

    def plugins(self) -> list[dict[str, Any]]:
        """Connector classes the worker can run (GET /connector-plugins)."""
        return self._call("GET", "/connector-plugins")

    def connectors(self) -> list[str]:
        """Names of the connectors the Connect cluster runs (GET /connectors)."""
        return sorted(self._call("GET", "/connectors"))

    def create(self, name: str, config: dict[str, str]) -> dict[str, Any]:
        """Create connector `name`, or update its config if it exists (PUT is idempotent)."""
        return self._call("PUT", f"/connectors/{_name(name)}/config", json=config)

    def create_stopped(self, name: str, config: dict[str, str]) -> dict[str, Any]:
        """Create connector `name` in the STOPPED state: no task runs until `resume`.

        Its source offsets can be reset first: a new connector with an old name inherits
        the offsets its predecessor left in Kafka.
        """
        body = {"name": name, "config": config, "initial_state": "STOPPED"}
        return self._call("POST", "/connectors", json=body)

    def config(self, name: str) -> dict[str, str]:
        """A connector's configuration, as the worker holds it."""
        return self._call("GET", f"/connectors/{_name(name)}/config")

    def status(self, name: str) -> dict[str, Any]:
        """The connector's state and each task's (RUNNING, PAUSED, FAILED with a trace)."""
        return self._call("GET", f"/connectors/{_name(name)}/status")

    def pause(self, name: str) -> None:
        """Pause a connector: its tasks stop, its offsets are kept."""
        self._call("PUT", f"/connectors/{_name(name)}/pause")

    def resume(self, name: str) -> None:
        """Run a paused or stopped connector's tasks again."""
        self._call("PUT", f"/connectors/{_name(name)}/resume")

    def stop(self, name: str) -> None:
        """Shut the connector's tasks down but keep its config (state STOPPED, unlike pause)."""
        self._call("PUT", f"/connectors/{_name(name)}/stop")

    def offsets(self, name: str) -> list[dict[str, Any]]:
        """The committed offsets: for a file source, the byte position reached in its file."""
        return self._call("GET", f"/connectors/{_name(name)}/offsets")["offsets"]

    def reset_offsets(self, name: str) -> None:
        """Forget the committed offsets of a STOPPED connector, so it starts from the beginning."""
        self._call("DELETE", f"/connectors/{_name(name)}/offsets")

    def delete(self, name: str) -> None:
        """Stop and remove the connector (its committed source offsets stay in Kafka)."""
        self._call("DELETE", f"/connectors/{_name(name)}")

    def _call(self, method: str, path: str, json: object = None) -> Any:
        deadline = time.monotonic() + self.timeout
        try:
            with httpx.Client(transport=self._transport, timeout=self.timeout) as http:
                response = http.request(method, self.url + path, json=json)
                # 409: the group is rebalancing (a worker joined, a connector was added);
                # Connect asks clients to retry, and the request succeeds once it settles.
                while response.status_code == 409 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    response = http.request(method, self.url + path, json=json)
        except httpx.HTTPError as exc:
            raise ConnectError(
                f"No Kafka Connect worker answers at {self.url} ({exc}): start it with "
                "`rtml connect up`, or check RTML_CONNECT_PORT."
            ) from exc
        if response.status_code >= 400:
            raise ConnectError(
                f"Kafka Connect refused {method} {path} ({response.status_code}): "
                f"{_message(response)}",
                response.status_code,
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def _name(name: str) -> str:
    # Connector names may hold characters that are not safe in a URL path.
    return quote(name, safe="")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message") or response.text)
    except ValueError:
        return response.text.strip() or response.reason_phrase
