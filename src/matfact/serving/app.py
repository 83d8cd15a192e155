"""The recommendation service: FastAPI on uvicorn, live ratings, hot model swap.

``create_app(model_path, db_path)`` builds the ASGI application;
``matfact serve`` runs it. Reads are open (unless ``require_key``); writes
(``POST /ratings``, ``POST /admin/reload``) need the API key, compared in
constant time. A rating is acknowledged only after its SQLite transaction has
committed and the model has recomputed its user, so the next recommendation
already reflects it; on start and on reload the log is replayed over the model
file, so nothing acknowledged is lost.

Every model operation runs on the event loop's thread (they take well under a
millisecond); the SQLite commit and the loading of a new model file run in
threads, so neither blocks queries.
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions'
# annotations, and those name classes local to create_app.
import asyncio
import contextlib
import hmac
import json as _stdlib_json
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from matfact.exceptions import DataError, MatfactError, UnknownIdError
from matfact.serving.service import MAX_N, ModelService
from matfact.serving.store import Rating, RatingStore

__all__ = ["create_app", "MAX_BATCH", "MAX_BODY_BYTES", "API_KEY_ENV"]

#: Ratings (or pairs) per request.
MAX_BATCH = 10_000
#: Request bodies larger than this are refused with 413.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Where the write key is read from, unless a key file is given.
API_KEY_ENV = "MATFACT_API_KEY"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _read_key(api_key: str | None, key_file: str | os.PathLike | None) -> str | None:
    if api_key is not None:
        key = api_key
    elif key_file is not None:
        key = Path(key_file).read_text(encoding="utf-8").strip()
    else:
        key = os.environ.get(API_KEY_ENV)
    if key is not None and len(key) < 8:
        raise DataError("the API key must be at least 8 characters long")
    return key


class _Metrics:
    """Prometheus metrics of one app (its own registry, so apps never share counters)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("matfact_requests", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("matfact_request_seconds", "Request latency in the server",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.ratings = Counter("matfact_ratings_ingested", "Ratings committed and applied",
                               registry=self.registry)
        self.model = Gauge("matfact_model_info", "The model being served", ["version", "model"],
                           registry=self.registry)
        self.users = Gauge("matfact_model_users", "Users in the model", registry=self.registry)
        self.items = Gauge("matfact_model_items", "Items in the model", registry=self.registry)

    def serving(self, service: ModelService) -> None:
        self.model.clear()
        self.model.labels(service.version, type(service.model).__name__).set(1)
        self.users.set(service.model.n_users_)
        self.items.set(service.model.n_items_)


_RECOMMEND_ROUTE = "/users/{user}/recommendations"
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _fast_query(query: bytes) -> tuple[int, bool] | None:
    """``(n, exclude_seen)`` of a recommendations query, or None to let FastAPI answer."""
    n, exclude = 10, True
    for part in query.decode("latin-1").split("&") if query else ():
        name, _, value = part.partition("=")
        if name == "n" and value.isdigit() and 1 <= int(value) <= MAX_N:
            n = int(value)
        elif name == "exclude_seen" and value.lower() in _TRUE + _FALSE:
            exclude = value.lower() in _TRUE
        else:
            return None  # anything else (or bad) goes through the validating route
    return n, exclude


class _Guard:
    """Pure ASGI middleware: body-size limit, request count/latency per route, fast path.

    ``GET /users/{user}/recommendations`` with a well-formed query is answered
    here, without FastAPI's routing and validation layers (the route itself
    stays, for the schema and for every query this does not accept); the answer
    is the same either way.
    """

    def __init__(self, app: Any, metrics: _Metrics, fast: Any = None) -> None:
        self.app = app
        self.metrics = metrics
        self.fast = fast

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        if self.fast is not None and scope["method"] == "GET" and path.startswith("/users/") \
                and path.endswith("/recommendations"):
            user = path[7:-16]
            query = _fast_query(scope.get("query_string", b""))
            if user and "/" not in user and query is not None:
                body = self.fast(user, *query)
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                self.metrics.requests.labels(_RECOMMEND_ROUTE, "200").inc()
                self.metrics.latency.labels(_RECOMMEND_ROUTE).observe(
                    time.perf_counter() - start)
                return
        status = {"code": 500}
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                await _plain(send, 413, f"request body over {MAX_BODY_BYTES} bytes")
                self._count(scope, 413, start)
                return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise _TooLarge
            return message

        async def watched_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            await _plain(send, 413, f"request body over {MAX_BODY_BYTES} bytes")
            status["code"] = 413
        self._count(scope, status["code"], start)

    def _count(self, scope: dict, status: int, start: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "other"
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def _tolist(value: Any) -> Any:
    """NumPy values for the standard json module (orjson serializes them natively)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")


class _TooLarge(Exception):
    pass


async def _plain(send: Any, status: int, detail: str) -> None:
    import orjson

    body = orjson.dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(model_path: str | os.PathLike, db_path: str | os.PathLike, *,
               api_key: str | None = None, api_key_file: str | os.PathLike | None = None,
               require_key: bool = False) -> Any:
    """Build the service's ASGI application.

    Parameters
    ----------
    model_path : path-like
        A model written by :meth:`~matfact.models.base.Recommender.save`. ``POST
        /admin/reload`` re-reads this same path: clients never name files.
    db_path : path-like or str
        The rating log, replayed over the model at start: an SQLite file (created
        if missing) or an SQLAlchemy URL (``postgresql+psycopg://...``).
    api_key, api_key_file : str or path-like, default=None
        The write key; by default the ``MATFACT_API_KEY`` environment variable.
        Without a key, writes are refused.
    require_key : bool, default=False
        Require the key for reads too.

    Returns
    -------
    fastapi.FastAPI
    """
    import orjson
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, PlainTextResponse, Response
    from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr

    model_path = Path(model_path)
    key = _read_key(api_key, api_key_file)
    store = RatingStore(db_path)
    metrics = _Metrics()
    state: dict[str, Any] = {"sequence": 0}

    def load_service() -> ModelService:
        service = ModelService.from_file(model_path, state["sequence"])
        service.replay(store)
        return service

    state["service"] = load_service()
    state["service"].warm()
    metrics.serving(state["service"])
    reload_lock = threading.Lock()

    def json(content: Any, status: int = 200) -> Response:
        try:
            body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError:
            # orjson refuses a lone surrogate in an echoed id ("\ud800" is valid JSON
            # input); the standard library escapes it (found by the schema fuzzing).
            body = _stdlib_json.dumps(content, default=_tolist).encode("ascii")
        return Response(body, status_code=status, media_type="application/json")

    def authorized(request: Request) -> bool:
        if key is None:
            return False
        given = request.headers.get("x-api-key")
        if given is None:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        return given is not None and hmac.compare_digest(given.encode(), key.encode())

    def need_key(request: Request) -> None:
        if key is None:
            raise HTTPException(403, f"writes are disabled: no API key is configured (set "
                                     f"{API_KEY_ENV} or pass --api-key-file)")
        if not authorized(request):
            raise HTTPException(401, "a valid API key is required (X-API-Key header)")

    def read_access(request: Request) -> None:
        if require_key:
            need_key(request)

    # Integer ids are 64-bit in the model and in the SQLite log: larger ones are refused
    # by the schema (422), not met later as an OverflowError (found by the schema fuzzing).
    Id = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)] | StrictStr

    class RatingIn(BaseModel):
        user: Id
        item: Id
        rating: StrictFloat | StrictInt
        timestamp: StrictFloat | StrictInt | None = None

    class RatingsIn(BaseModel):
        ratings: list[RatingIn] = Field(min_length=1, max_length=MAX_BATCH)

    class PairsIn(BaseModel):
        users: list[Id] = Field(min_length=1, max_length=MAX_BATCH)
        items: list[Id] = Field(min_length=1, max_length=MAX_BATCH)

    class HistoryIn(BaseModel):
        items: list[Id] = Field(max_length=MAX_BATCH)
        ratings: list[StrictFloat | StrictInt] | None = Field(default=None,
                                                               max_length=MAX_BATCH)
        n: int = Field(default=10, ge=1, le=MAX_N)

    # The answers' shapes, for the OpenAPI schema only: routes build their JSON
    # directly (orjson), so these document and are checked by the schema tests
    # (tests/hardening/test_api_schema.py), not re-validated per request.
    Score = float | None  # NaN and infinities serialize as null

    class ErrorOut(BaseModel):
        detail: str

    class ItemsOut(BaseModel):
        items: list[Id]
        scores: list[Score]
        titles: list[str | None] | None = None
        model_version: str

    class RecommendationsOut(ItemsOut):
        user: str
        fallback: str | None

    class SimilarOut(ItemsOut):
        item: str

    class HistoryOut(ItemsOut):
        used: int
        unknown_items: list[Id]

    class PredictionsOut(BaseModel):
        predictions: list[Score]
        fallback: list[bool]
        model_version: str

    class RatingsOut(BaseModel):
        accepted: int
        new_users: list[Id]
        new_items: list[Id]
        model_version: str

    class ReloadOut(BaseModel):
        model_version: str
        replayed: int

    class HealthOut(BaseModel):
        status: str
        model: str
        model_version: str
        users: int
        items: int
        precomputed: int

    def answers(ok: type, *errors: int) -> dict:
        """``responses=`` of a route: its 200 body and the errors it may give."""
        reasons = {400: "Invalid input for this model", 401: "Missing or wrong API key",
                   403: "Writes disabled (no API key configured)", 404: "Unknown id",
                   409: "A reload is already running", 413: "Request body too large",
                   500: "Reload failed; the previous model is still served"}
        reads = (401, 403) if require_key else ()
        out: dict = {200: {"model": ok}}
        for code in sorted({*errors, *reads}):
            out[code] = {"model": ErrorOut, "description": reasons[code]}
        return out

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        state["service"].stop_warming()
        store.close()

    app = FastAPI(lifespan=lifespan, title="matfact recommendation service",
                  description="Recommendations, predictions and live ratings from a matfact "
                              "model.", version=state["service"].version)

    @app.exception_handler(UnknownIdError)
    async def unknown_id(request: Request, exc: UnknownIdError) -> Response:
        return json({"detail": str(exc)}, 404)

    @app.exception_handler(MatfactError)
    async def bad_input(request: Request, exc: MatfactError) -> Response:
        return json({"detail": str(exc)}, 400)

    @app.get("/health", dependencies=[Depends(read_access)], responses=answers(HealthOut))
    async def health() -> Response:
        service = state["service"]
        return json({"status": "ok", "model": type(service.model).__name__,
                     "model_version": service.version, "users": service.model.n_users_,
                     "items": service.model.n_items_, "precomputed": service.index.n_kept})

    @app.get("/users/{user}/recommendations", dependencies=[Depends(read_access)],
             responses=answers(RecommendationsOut, 400))
    async def recommendations(user: str, n: int = Query(10, ge=1, le=MAX_N),
                              exclude_seen: bool = True) -> Response:
        return json(state["service"].recommend(user, n, exclude_seen))

    @app.get("/items/{item}/similar", dependencies=[Depends(read_access)],
             responses=answers(SimilarOut, 400, 404))
    async def similar(item: str, n: int = Query(10, ge=1, le=MAX_N)) -> Response:
        service = state["service"]
        try:
            return json(service.similar(item, n))
        except NotImplementedError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.post("/predict", dependencies=[Depends(read_access)],
              responses=answers(PredictionsOut, 400, 413))
    async def predict(body: PairsIn) -> Response:
        return json(state["service"].predict(body.users, body.items))

    @app.post("/recommendations", dependencies=[Depends(read_access)],
              responses=answers(HistoryOut, 400, 413))
    async def anonymous(body: HistoryIn) -> Response:
        return json(state["service"].recommend_for_history(body.items, body.ratings, body.n))

    @app.post("/ratings", dependencies=[Depends(need_key)],
              responses=answers(RatingsOut, 400, 401, 403, 413))
    async def ratings(body: RatingsIn) -> Response:
        batch = [Rating(r.user, r.item, float(r.rating),
                        None if r.timestamp is None else float(r.timestamp))
                 for r in body.ratings]
        # The model checks the batch before it is logged: the log holds only what it accepted.
        batch = state["service"].check_ratings(batch)
        # Acknowledge only once committed: the group commit resolves this future.
        await asyncio.wrap_future(store.append_async(batch))
        changes = state["service"].apply(batch)
        metrics.ratings.inc(len(batch))
        metrics.serving(state["service"])
        return json({"accepted": len(batch), **changes,
                     "model_version": state["service"].version})

    @app.post("/admin/reload", dependencies=[Depends(need_key)],
              responses=answers(ReloadOut, 401, 403, 409, 500))
    async def reload() -> Response:
        if not reload_lock.acquire(blocking=False):
            raise HTTPException(409, "a reload is already running")
        try:
            state["sequence"] += 1
            fresh = await asyncio.get_running_loop().run_in_executor(None, load_service)
            # Ratings committed while the file was loading: fold them in, then swap.
            fresh.replay(store)
            previous, state["service"] = state["service"], fresh
            previous.stop_warming()
            fresh.warm()
            metrics.serving(fresh)
        except (OSError, MatfactError, ValueError) as exc:
            raise HTTPException(500, f"reload failed, still serving the previous model: "
                                     f"{exc}") from None
        finally:
            reload_lock.release()
        return json({"model_version": fresh.version, "replayed": fresh.applied_seq})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    page = resources.files("matfact.serving").joinpath("web/index.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    def fast_recommendations(user: str, n: int, exclude_seen: bool) -> bytes:
        return orjson.dumps(state["service"].recommend(user, n, exclude_seen),
                            option=orjson.OPT_SERIALIZE_NUMPY)

    app.state.store = store
    app.state.services = state
    return _wrap(app, metrics, None if require_key else fast_recommendations)


def _wrap(app: Any, metrics: _Metrics, fast: Any) -> Any:
    """The FastAPI app behind the guard, keeping ``.state`` and ``.openapi`` reachable."""
    guard = _Guard(app, metrics, fast)
    guard.state = app.state
    guard.fastapi = app
    return guard
