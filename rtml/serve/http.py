"""The synchronous scoring path: `POST /score` answers with a decision, on 127.0.0.1.

The streaming service scores every transaction that reaches `features`; this endpoint
scores one transaction on request, before (or instead of) the stream, from the online
store's latest features (see `request_features` for what is exact and what is not) and
the latest model version on `model-updates`. One process holds the store follower, the
model follower and the HTTP server (`rtml online serve`).

Endpoints: `POST /score`, `GET /features/{customer_id}`, `GET /health`. Input is validated
by pydantic: a bad request gets a 422 with one sentence naming the fields, never a 500.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import signal
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rtml.clients import QUIET
from rtml.config import Settings
from rtml.model.update import MODEL_NAME, ModelError, ModelUpdate, Scorer, decode_features
from rtml.model.update import TOPIC as MODEL_TOPIC
from rtml.schemas import SchemaError
from rtml.schemas.wire import WireDeserializer
from rtml.serve.request_features import request_features
from rtml.serve.store import DEFAULT_NAME, Follower, OnlineStore, OnlineStoreError

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


class Transaction(BaseModel):
    """A transaction to score. `tx_datetime`: ISO 8601 (no zone means UTC) or epoch ms."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: int = Field(ge=0)
    customer_id: int = Field(ge=0)
    terminal_id: int = Field(ge=0)
    tx_amount: float = Field(ge=0, allow_inf_nan=False)
    tx_datetime: dt.datetime


class Score(BaseModel):
    """The decision on one transaction, with the features it was made from."""

    transaction_id: int
    score: float
    decision: str
    model_version: str
    latency_ms: float = Field(description="time in the handler: store reads, features, scoring")
    features: dict[str, float | int | bool | None]
    customer_known: bool
    terminal_known: bool
    customer_feature_age_ms: int | None
    terminal_feature_age_ms: int | None
    approximate: list[str]
    unavailable: list[str]


class LatestModel(threading.Thread):
    """Follows `model-updates` and holds a scorer for the latest valid version of a model.

    The topic is compacted and has one partition: reading it from the start gives every
    model's latest versions, then each new one as it is published. A version that fails
    `Scorer.load` is refused (its reason kept for /health); the previous scorer stays.
    """

    def __init__(self, settings: Settings, name: str = MODEL_NAME) -> None:
        super().__init__(name=f"latest-model-{name}", daemon=True)
        self.settings = settings
        self.key = name.encode()
        self.scorer: Scorer | None = None
        self.error: str | None = None
        self.halt = threading.Event()
        self.caught_up = threading.Event()

    def current(self) -> Scorer | None:
        """The scorer in service now, or None before any version loaded."""
        return self.scorer

    def run(self) -> None:
        """Follow `model-updates` until stopped; an error is kept for `/health`."""
        try:
            self._run()
        except Exception as exc:  # kept for /health; the thread ends
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("The model follower stopped")

    def _run(self) -> None:
        decode = WireDeserializer.for_topic(self.settings, MODEL_TOPIC)
        consumer = Consumer(
            self.settings.client_config(
                group_id=f"rtml-online-model-{uuid.uuid4().hex[:6]}",
                enable_auto_commit=False,
                fetch_wait_max_ms=100,
                logger=QUIET,
            )
        )
        tp = TopicPartition(MODEL_TOPIC, 0)
        try:
            consumer.assign([TopicPartition(MODEL_TOPIC, 0, OFFSET_BEGINNING)])
            _, end = consumer.get_watermark_offsets(tp, timeout=10)
            position = 0
            while not self.halt.is_set():
                for msg in consumer.consume(100, timeout=0.2):
                    if msg.error() is None:
                        position = msg.offset() + 1
                        if msg.key() == self.key and msg.value() is not None:
                            self._offer(msg.value(), decode)
                if position >= end or consumer.position([tp])[0].offset >= end:
                    self.caught_up.set()
        finally:
            consumer.close()

    def _offer(self, value: bytes, decode: WireDeserializer) -> None:
        try:
            update = ModelUpdate.from_record(decode(value))
            if self.scorer is not None and update == self.scorer.update:
                return  # the same version read again (a compaction left both copies)
            self.scorer = Scorer.load(update)
            self.error = None
            log.info("Scoring with model %s version %s", update.name, update.version)
        except (ModelError, SchemaError, KeyError) as exc:
            self.error = f"refused a version: {exc}"
            log.warning("Kept the previous model: %s", exc)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop following and wait for the thread."""
        self.halt.set()
        self.join(timeout)


def _ms(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def _sentence(errors: Sequence[Any]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts) + "."


def create_app(
    store: OnlineStore, models: LatestModel | Any, follower: Follower | None = None
) -> FastAPI:
    """The FastAPI app over `store` and `models` (anything with `current() -> Scorer`)."""
    app = FastAPI(title="rtml online scoring", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
            for e in exc.errors()
        ]
        return JSONResponse(
            status_code=422, content={"detail": _sentence(exc.errors()), "errors": errors}
        )

    @app.post("/score", response_model=Score)
    def score(tx: Transaction) -> Any:
        started = time.perf_counter()
        scorer = models.current()
        if scorer is None:
            return JSONResponse(
                status_code=503,
                content={
                    "detail": f"No version of model {MODEL_NAME} is loaded yet: publish one "
                    f"to topic {MODEL_TOPIC} first."
                },
            )
        tx_ms = _ms(tx.tx_datetime)
        found = request_features(
            tx.transaction_id,
            tx_ms,
            tx.tx_amount,
            store.customer(tx.customer_id),
            store.terminal(tx.terminal_id),
            store.distance(tx.customer_id, tx.terminal_id),
            now_ms=time.time_ns() // 1_000_000,
        )
        columns = scorer.features
        probability = scorer.score(decode_features([found.values], columns))
        decision = scorer.update.decide(probability)[0]
        used = set(columns)
        return Score(
            transaction_id=tx.transaction_id,
            score=float(probability[0]),
            decision=str(decision),
            model_version=scorer.version,
            latency_ms=(time.perf_counter() - started) * 1000,
            features={c: found.values[c] for c in columns},
            customer_known=found.customer_known,
            terminal_known=found.terminal_known,
            customer_feature_age_ms=found.customer_age_ms,
            terminal_feature_age_ms=found.terminal_age_ms,
            approximate=[c for c in found.approximate if c in used],
            unavailable=[c for c in found.unavailable if c in used],
        )

    @app.get("/features/{customer_id}")
    def features(customer_id: int) -> Any:
        row = store.customer(customer_id)
        if row is None:
            return JSONResponse(
                status_code=404,
                content={"detail": f"Customer {customer_id} is not in the online store."},
            )
        row["age_ms"] = time.time_ns() // 1_000_000 - row["feature_time"]
        return row

    @app.get("/health")
    def health() -> dict[str, Any]:
        scorer = models.current()
        lag = None if follower is None else dict(follower.lag)
        caught_up = follower is not None and follower.caught_up.is_set()
        return {
            "ready": scorer is not None and (follower is None or caught_up),
            "store": {
                "path": store.path.name,
                "offsets": store.offsets(),
                "lag": lag,
                "lag_total": None if not lag or None in lag.values() else sum(lag.values()),
                "caught_up": caught_up,
                "rows": store.counts(),
                "stats": store.stats(),
                "error": None if follower is None else follower.error,
            },
            "model": {
                "name": MODEL_NAME,
                "version": None if scorer is None else scorer.version,
                "error": getattr(models, "error", None),
            },
        }

    return app


def check_bindable(host: str, port: int) -> None:
    """Refuse any address but 127.0.0.1, and a port already taken, with one sentence."""
    if host != HOST:
        raise OnlineStoreError(
            f"The scoring endpoint binds {HOST} only, not {host!r}: it has no authentication."
        )
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise OnlineStoreError(
                f"Port {port} on {host} is in use: choose another with --port or RTML_ONLINE_PORT."
            ) from None


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGINT/SIGTERM make `run` return instead of killing
    the process once it has shut down, so the followers stop cleanly after it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(
    settings: Settings, name: str = DEFAULT_NAME, host: str = HOST, port: int | None = None
) -> None:
    """Follow the store and the model, and serve HTTP on host:port until SIGINT/SIGTERM."""
    port = settings.online_port if port is None else port
    check_bindable(host, port)
    store = OnlineStore.open(settings, name)
    follower = store.follow(settings, name)
    models = LatestModel(settings)
    models.start()
    try:
        config = uvicorn.Config(
            create_app(store, models, follower),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )
        print(
            f"Scoring on http://{host}:{port} (store {name}, model {MODEL_NAME}); Ctrl-C stops it.",
            flush=True,
        )
        _Server(config).run()
    finally:
        models.stop()
        follower.stop()


@dataclass(frozen=True)
class Latency:
    """Request/response times of sequential requests, in ms: seen by the client (network,
    HTTP, JSON included) and inside the server (the `latency_ms` each response reports)."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float
    server_p50: float
    server_p99: float

    def line(self) -> str:
        """The percentiles as one line."""
        return (
            f"{self.n} requests: p50 {self.p50:.2f} ms, p95 {self.p95:.2f} ms, "
            f"p99 {self.p99:.2f} ms, max {self.max:.2f} ms (in the server: p50 "
            f"{self.server_p50:.2f} ms, p99 {self.server_p99:.2f} ms)"
        )


def _percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile of sorted `values`."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def measure(url: str, payloads: Sequence[dict[str, Any]], warmup: int = 20) -> Latency:
    """POST each payload to `url` in turn over one keep-alive connection; time each."""
    times, server = [], []
    with httpx.Client(timeout=10) as client:
        for payload in payloads[:warmup]:
            client.post(url, json=payload).raise_for_status()
        for payload in payloads:
            started = time.perf_counter()
            response = client.post(url, json=payload)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            server.append(response.json()["latency_ms"])
    times.sort()
    server.sort()
    return Latency(
        len(times),
        _percentile(times, 0.50),
        _percentile(times, 0.95),
        _percentile(times, 0.99),
        times[-1],
        statistics.fmean(times),
        _percentile(server, 0.50),
        _percentile(server, 0.99),
    )
