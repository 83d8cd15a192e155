"""The recommendation service: FastAPI on uvicorn, live ratings, hot model swap.

``create_app(model_path, db_path)`` builds the ASGI application;
``matfact serve`` runs it. Reads are open (unless ``require_key``, which covers
every route but ``/health``); writes (``POST /ratings``, ``POST /admin/reload``)
need the API key, compared as UTF-8 bytes in constant time. A rating is
acknowledged only after its SQLite transaction has committed and the model has
recomputed its user, so the next recommendation already reflects it; on start
and on reload the log is replayed over the model file, so nothing acknowledged
is lost, and a logged row the model cannot take is moved to the quarantine
instead of stopping the start.

Bad input gets a 4xx with a short message, never a 500: 400 for what the model
refuses (and ids that are not valid Unicode text), 404 for an unknown item,
413 for a body over the limit (with or without a length), 422 for what the
schema refuses; 503 when the rating log cannot commit (database locked, disk
full), with the details in the server's log only.

Every model operation runs on the event loop's thread (they take well under a
millisecond); the SQLite commit and the loading of a new model file run in
threads, so neither blocks queries.

The API page (``/docs``, Swagger UI) loads its script and style from this
server, from the files the ``fastapi-offline`` package ships, never from a CDN:
it works on a machine with no internet. There is no ``/redoc``: ReDoc fetches
its logo from its makers' site whatever it is given.
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions'
# annotations, and those name classes local to create_app.
import asyncio
import contextlib
import hmac
import json as _stdlib_json
import logging
import math
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from matfact.data.interactions import max_id_length
from matfact.exceptions import DataError, MatfactError, UnknownIdError
from matfact.serving.service import MAX_EXPLAIN, MAX_N, ModelService
from matfact.serving.store import Rating, RatingLogUnavailable, RatingStore

__all__ = ["create_app", "rating_scale", "MAX_BATCH", "MAX_BODY_BYTES", "API_KEY_ENV",
           "DOCS_ASSETS_PATH"]

#: Ratings (or pairs) per request.
MAX_BATCH = 10_000
#: Request bodies larger than this are refused with 413.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Where the write key is read from, unless a key file is given.
API_KEY_ENV = "MATFACT_API_KEY"
logger = logging.getLogger("matfact.serving")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Where the API page's script and style are served from (the files of fastapi-offline).
DOCS_ASSETS_PATH = "/docs-assets"


def rating_scale(model: Any) -> dict[str, float | None] | None:
    """The scale a rating sent to ``model`` must lie on, as ``/health`` shows it.

    Parameters
    ----------
    model : fitted matfact model

    Returns
    -------
    dict or None
        ``{"min": ..., "max": ..., "step": ...}`` from the model's ``rating_scale_``
        and ``rating_step_`` (``step`` is None where the scale has none: any value
        in between is taken), or None where the model has no rating scale
        (implicit feedback, ranking losses).
    """
    scale = getattr(model, "rating_scale_", None)
    if scale is None:
        return None
    scale = tuple(scale)
    # The step is the model's rating_step_ (or a third element of the scale, as
    # rating_scale= is written); None or 0 means none.
    step = scale[2] if len(scale) > 2 else getattr(model, "rating_step_", None)
    step = step or None
    return {"min": float(scale[0]), "max": float(scale[1]),
            "step": None if step is None else float(step)}


def _docs_assets() -> Path | None:
    """The folder of Swagger UI's files (fastapi-offline's), or None if it is not installed."""
    try:
        folder = resources.files("fastapi_offline").joinpath("static")
    except ModuleNotFoundError:
        return None
    folder = Path(str(folder))
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _read_key(api_key: str | None, key_file: str | os.PathLike | None) -> str | None:
    if api_key is not None:
        key, source = api_key, "the API key"
    elif key_file is not None:
        key = Path(key_file).read_text(encoding="utf-8").strip()
        source = f"the API key in {key_file}"
    else:
        key, source = os.environ.get(API_KEY_ENV), f"the API key in {API_KEY_ENV}"
    if key is None:
        return None
    if not key.strip():
        raise DataError(f"{source} is blank (empty or only whitespace): set a secret of at "
                        f"least 8 characters, or unset it to refuse writes")
    if key != key.strip():
        raise DataError(f"{source} begins or ends with whitespace, which an HTTP header "
                        f"cannot carry: remove it")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise DataError(f"{source} holds control characters, which an HTTP header cannot "
                        f"carry")
    if len(key) < 8:
        raise DataError(f"{source} must be at least 8 characters long")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{source} is not valid Unicode text") from None
    return key


def _given_key(headers: Any) -> bytes | None:
    """The key a request carries, as the raw bytes of its header (``X-API-Key`` or Bearer)."""
    bearer = None
    for name, value in headers:
        if name == b"x-api-key":
            return value
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip()
    return bearer


def _key_matches(headers: Any, key: bytes | None) -> bool:
    """Constant-time comparison of the request's key with ``key`` (UTF-8 bytes)."""
    given = _given_key(headers)
    return key is not None and given is not None and hmac.compare_digest(given, key)


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
        self.quarantined = Gauge("matfact_ratings_quarantined",
                                 "Logged ratings moved to the quarantine table (rows the "
                                 "model could not take)", registry=self.registry)
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


def _fast_query(query: bytes) -> tuple[int, bool, int | None] | None:
    """``(n, exclude_seen, explain)`` of a recommendations query, or None to let FastAPI answer."""
    n, exclude, explain = 10, True, None
    for part in query.decode("latin-1").split("&") if query else ():
        name, _, value = part.partition("=")
        if name == "n" and value.isdigit() and 1 <= int(value) <= MAX_N:
            n = int(value)
        elif name == "exclude_seen" and value.lower() in _TRUE + _FALSE:
            exclude = value.lower() in _TRUE
        elif name == "explain" and value.isdigit() and 1 <= int(value) <= MAX_EXPLAIN:
            explain = int(value)
        else:
            return None  # anything else (or bad) goes through the validating route
    return n, exclude, explain


class _Guard:
    """Pure ASGI middleware: key, body-size limit, request count/latency per route, fast path.

    With ``key`` set (``require_key``), every route but ``/health`` needs it: the
    API pages and the metrics too. A body over :data:`MAX_BODY_BYTES` gets 413,
    whether it announced its length or came in chunks: the body is read here, up
    to the limit, before the application sees it. ``GET
    /users/{user}/recommendations`` with a well-formed query is answered here,
    without FastAPI's routing and validation layers (the route itself stays, for
    the schema and for every query this does not accept); the answer is the same
    either way.
    """

    def __init__(self, app: Any, metrics: _Metrics, fast: Any = None, *,
                 key: bytes | None = None, require_key: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.fast = fast
        self.key = key
        self.require_key = require_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        headers = scope.get("headers", ())
        if self.require_key and path != "/health" and not _key_matches(headers, self.key):
            status = 403 if self.key is None else 401
            await _plain(send, status, "writes are disabled: no API key is configured"
                         if self.key is None else
                         "a valid API key is required (X-API-Key header)")
            self._count(scope, status, start)
            return
        if self.fast is not None and scope["method"] == "GET" and path.startswith("/users/") \
                and path.endswith("/recommendations"):
            user = path[7:-16]
            query = _fast_query(scope.get("query_string", b""))
            if user and "/" not in user and len(user) <= max_id_length() and \
                    query is not None:
                body = self.fast(user, *query)
                if body is not None:
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    self.metrics.requests.labels(_RECOMMEND_ROUTE, "200").inc()
                    self.metrics.latency.labels(_RECOMMEND_ROUTE).observe(
                        time.perf_counter() - start)
                    return
        status = {"code": 500}
        has_body = False
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit():
                    continue  # the HTTP server refuses a malformed length before this
                if int(value) > MAX_BODY_BYTES:
                    await _plain(send, 413, f"request body over {MAX_BODY_BYTES} bytes")
                    self._count(scope, 413, start)
                    return
                has_body = has_body or int(value) > 0
            elif name == b"transfer-encoding":
                has_body = True
        if has_body:
            # Read the whole body here, up to the limit: a chunked body has no length to
            # check, and a limit hit inside the application became its 400.
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    await _plain(send, 413, f"request body over {MAX_BODY_BYTES} bytes")
                    self._count(scope, 413, start)
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            receive = _replay(b"".join(chunks), receive)

        async def watched_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, watched_send)
        self._count(scope, status["code"], start)

    def _count(self, scope: dict, status: int, start: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "other"
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives ``body`` once, then waits on the client (for a disconnect)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _tolist(value: Any) -> Any:
    """NumPy values for the standard json module (orjson serializes them natively)."""
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return str(value)


async def _plain(send: Any, status: int, detail: str) -> None:
    import orjson

    body = orjson.dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(model_path: str | os.PathLike, db_path: str | os.PathLike, *,
               api_key: str | None = None, api_key_file: str | os.PathLike | None = None,
               require_key: bool = False, index: str = "exact",
               max_kept: int | None = None) -> Any:
    """Build the service's ASGI application.

    Parameters
    ----------
    model_path : path-like
        A model written by :meth:`~matfact.models.base.Recommender.save`. ``POST
        /admin/reload`` re-reads this same path: clients never name files.
    db_path : path-like or str
        The rating log, replayed over the model at start: an SQLite file (created
        if missing) or an SQLAlchemy URL (``postgresql+psycopg://...``). Logged
        rows the model cannot take are moved to its quarantine table.
    api_key, api_key_file : str or path-like, default=None
        The write key; by default the ``MATFACT_API_KEY`` environment variable.
        Without a key, writes are refused. A blank key, one with surrounding
        whitespace or one shorter than 8 characters is refused here.
    require_key : bool, default=False
        Require the key for every route but ``/health`` (reads, ``/metrics``,
        ``/docs``, ``/openapi.json`` and the page too).
    index : {"exact", "approximate", "auto"}, default="exact"
        How recommendation lists are searched (see
        :func:`matfact.serving.index.resolve_mode`); a reload keeps the choice.
    max_kept : int, default=None
        Users whose lists are precomputed, the most active first (None: the mode's
        default; 0: none).

    Returns
    -------
    ASGI application
        FastAPI behind a small ASGI guard; ``.state`` and ``.fastapi`` reach the
        FastAPI application.
    """
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, PlainTextResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr
    from starlette.exceptions import HTTPException as StarletteHTTPException

    model_path = Path(model_path)
    # Captured now: a route below is named index (the web page).
    search = {"index": index, "max_kept": max_kept}
    key = _read_key(api_key, api_key_file)
    key_bytes = None if key is None else key.encode("utf-8")
    id_length = max_id_length()
    store = RatingStore(db_path)
    metrics = _Metrics()
    state: dict[str, Any] = {"sequence": 0}

    def load_service() -> ModelService:
        service = ModelService.from_file(model_path, state["sequence"], **search)
        service.replay(store)  # never fails on a row: those it cannot take are quarantined
        return service

    try:
        state["service"] = load_service()
    except BaseException:
        store.close()
        raise
    state["service"].warm()
    metrics.serving(state["service"])
    metrics.quarantined.set(store.quarantined)
    reload_lock = threading.Lock()

    def json(content: Any, status: int = 200) -> Response:
        return Response(_dumps(content), status_code=status, media_type="application/json")

    def need_key(request: Request) -> None:
        if key is None:
            raise HTTPException(403, f"writes are disabled: no API key is configured (set "
                                     f"{API_KEY_ENV} or pass --api-key-file)")
        if not _key_matches(request.headers.raw, key_bytes):
            raise HTTPException(401, "a valid API key is required (X-API-Key header)")

    # Integer ids are 64-bit in the model and in the SQLite log: larger ones are refused
    # by the schema (422), not met later as an OverflowError (found by the schema fuzzing).
    # Text ids are bounded (matfact.data's id rule; MATFACT_MAX_ID_LENGTH) before any
    # array is made of them.
    Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
    Id = Int64 | Annotated[StrictStr, Field(max_length=id_length)]
    # Numbers too: an integer of 400 digits cannot become a float (OverflowError).
    Number = StrictFloat | Int64

    class RatingIn(BaseModel):
        user: Id
        item: Id
        rating: Number
        timestamp: Number | None = None

    class RatingsIn(BaseModel):
        ratings: list[RatingIn] = Field(min_length=1, max_length=MAX_BATCH)

    class PairsIn(BaseModel):
        users: list[Id] = Field(min_length=1, max_length=MAX_BATCH)
        items: list[Id] = Field(min_length=1, max_length=MAX_BATCH)

    class HistoryIn(BaseModel):
        items: list[Id] = Field(max_length=MAX_BATCH)
        ratings: list[Number] | None = Field(default=None, max_length=MAX_BATCH)
        n: int = Field(default=10, ge=1, le=MAX_N)
        # History items listed per recommendation ("because you rated ..."); null: none.
        # (Strict: true is not 1.)
        explain: Annotated[StrictInt, Field(ge=1, le=MAX_EXPLAIN)] | None = None

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

    # What the scores of an answer are: predicted ratings (clipped to the model's
    # scale), ranking scores, popularity counts (the fallback of an unknown user) or
    # cosine similarities. "fallback" is "popularity" when the model could not place
    # the user, else null.
    ScoreKind = Literal["rating", "ranking", "popularity", "similarity"]

    class BecauseOut(BaseModel):
        """One history item's share of a recommended item's score (models.explain)."""

        item: Id
        title: str | None
        contribution: float  # what the item adds to the score (negative: pulls it down)
        value: float  # the rating (or interaction weight) the model read

    class ExplainedOut(ItemsOut):
        # Only with explain=k: per listed item, its k largest history contributions
        # (because_list of model.explain), and whether each split is exact (false: the
        # model's approximation, e.g. BPR); both null for the fallback ranking.
        because: list[list[BecauseOut]] | None = None
        because_exact: list[bool] | None = None

    class RecommendationsOut(ExplainedOut):
        user: Id  # in the model's id type: 196, not "196", for integer ids
        fallback: Literal["popularity"] | None
        score_kind: ScoreKind

    class SimilarOut(ItemsOut):
        item: Id
        score_kind: ScoreKind

    class HistoryOut(ExplainedOut):
        used: int
        unknown_items: list[Id]
        fallback: Literal["popularity"] | None
        score_kind: ScoreKind

    class PredictionsOut(BaseModel):
        predictions: list[Score]
        fallback: list[bool]
        score_kind: ScoreKind
        model_version: str

    class RatingsOut(BaseModel):
        accepted: int
        new_users: list[Id]
        new_items: list[Id]
        model_version: str

    class ReloadOut(BaseModel):
        model_version: str
        replayed: int

    class ScaleOut(BaseModel):
        min: float
        max: float
        step: float | None

    class IndexOut(BaseModel):
        mode: Literal["exact", "approximate"]
        max_kept: int  # users whose lists are precomputed at most (the most active first)
        lists: int | None = None  # approximate: the index's lists ...
        probe: int | None = None  # ... how many a query reads ...
        recall: float | None = None  # ... and the recall@10 measured when it was built

    class HealthOut(BaseModel):
        status: str
        model: str
        model_version: str
        users: int
        items: int
        precomputed: int
        quarantined: int
        feedback: Literal["explicit", "implicit"]  # ratings, or interactions (weights > 0)
        rating_scale: ScaleOut | None  # what a rating must lie on; null: no scale
        explains: bool  # whether explain=k is answered (false: the model has no explanation)
        index: IndexOut  # exact or approximate search, and the approximate index's settings

    def answers(ok: type, *errors: int, open_route: bool = False) -> dict:
        """``responses=`` of a route: its 200 body and the errors it may give."""
        reasons = {400: "Invalid input for this model", 401: "Missing or wrong API key",
                   403: "Writes disabled (no API key configured)", 404: "Unknown id",
                   409: "A reload is already running", 413: "Request body too large",
                   500: "Reload failed; the previous model is still served",
                   503: "The rating log cannot commit now (database locked, disk full); "
                        "nothing was logged"}
        reads = (401, 403) if require_key and not open_route else ()
        out: dict = {200: {"model": ok}}
        for code in sorted({*errors, *reads}):
            out[code] = {"model": ErrorOut, "description": reasons[code]}
        return out

    def text_ids(values: Any, what: str) -> None:
        """400 for a text id no model can hold: not valid Unicode (a lone surrogate)."""
        for value in values:
            if isinstance(value, str) and not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise DataError(f"{what} id {ascii(value[:40])} is not valid Unicode "
                                    f"text (a lone surrogate?); ids must be UTF-8 "
                                    f"text") from None

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        state["service"].stop_warming()
        store.close(timeout=_CLOSE_SECONDS)

    # The API page is this module's route (below), not FastAPI's: that one fetches Swagger
    # UI from a CDN, and is blank on a machine with no internet.
    app = FastAPI(lifespan=lifespan, title="matfact recommendation service",
                  description="Recommendations, predictions and live ratings from a matfact "
                              "model.", version=state["service"].version,
                  docs_url=None, redoc_url=None)

    @app.exception_handler(UnknownIdError)
    async def unknown_id(request: Request, exc: UnknownIdError) -> Response:
        return json({"detail": str(exc)}, 404)

    @app.exception_handler(MatfactError)
    async def bad_input(request: Request, exc: MatfactError) -> Response:
        return json({"detail": str(exc)}, 400)

    @app.exception_handler(RatingLogUnavailable)
    async def log_unavailable(request: Request, exc: RatingLogUnavailable) -> Response:
        return json({"detail": str(exc)}, 503)

    # FastAPI's own handlers write with the standard json module, which cannot write an
    # echoed lone surrogate or an infinity (``1e999`` in a body): both were 500s.
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        unicode = next((e for e in errors if e.get("type") == "string_unicode"), None)
        if unicode is not None:
            # A lone surrogate ("\ud800" is valid JSON): not text any model or log can
            # hold. Refused as bad input (400), like the model's id rule refuses it.
            where = ".".join(str(part) for part in unicode.get("loc", ())[1:4])
            return json({"detail": f"{where}: not valid Unicode text (a lone surrogate?); "
                                   f"ids and strings must be UTF-8 text"}, 400)
        return json({"detail": _errors(errors)}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = json({"detail": exc.detail}, exc.status_code)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.get("/health", responses=answers(HealthOut, open_route=True))
    async def health() -> Response:
        service = state["service"]
        return json({"status": "ok", "model": type(service.model).__name__,
                     "model_version": service.version, "users": service.model.n_users_,
                     "items": service.model.n_items_, "precomputed": service.index.n_kept,
                     "quarantined": store.quarantined,
                     "feedback": "implicit" if getattr(service.model, "is_implicit_", False)
                     else "explicit",
                     "rating_scale": rating_scale(service.model),
                     "explains": service.explains, "index": service.index.describe()})

    UserPath = Annotated[str, PathParam(max_length=id_length)]
    ItemPath = Annotated[str, PathParam(max_length=id_length)]

    @app.get("/users/{user}/recommendations", responses=answers(RecommendationsOut, 400))
    async def recommendations(
            user: UserPath, n: int = Query(10, ge=1, le=MAX_N), exclude_seen: bool = True,
            explain: int | None = Query(
                None, ge=1, le=MAX_EXPLAIN,
                description="List, for each item, the history items that contribute most "
                            "to its score (\"because you rated ...\"): how many")) -> Response:
        text_ids([user], "user")
        return json(state["service"].recommend(user, n, exclude_seen, explain))

    @app.get("/items/{item}/similar", responses=answers(SimilarOut, 400, 404))
    async def similar(item: ItemPath, n: int = Query(10, ge=1, le=MAX_N)) -> Response:
        text_ids([item], "item")
        service = state["service"]
        try:
            return json(service.similar(item, n))
        except NotImplementedError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.post("/predict", responses=answers(PredictionsOut, 400, 413))
    async def predict(body: PairsIn) -> Response:
        text_ids(body.users, "user")
        text_ids(body.items, "item")
        return json(state["service"].predict(body.users, body.items))

    @app.post("/recommendations", responses=answers(HistoryOut, 400, 413))
    async def anonymous(body: HistoryIn) -> Response:
        text_ids(body.items, "item")
        return json(state["service"].recommend_for_history(body.items, body.ratings, body.n,
                                                           body.explain))

    @app.post("/ratings", dependencies=[Depends(need_key)],
              responses=answers(RatingsOut, 400, 401, 403, 413, 503))
    async def ratings(body: RatingsIn) -> Response:
        text_ids([r.user for r in body.ratings], "user")
        text_ids([r.item for r in body.ratings], "item")
        batch = [Rating(r.user, r.item, float(r.rating),
                        None if r.timestamp is None else float(r.timestamp))
                 for r in body.ratings]
        # The model checks the batch before it is logged: the log holds only what it accepted.
        service = state["service"]
        batch = service.check_ratings(batch)
        # Acknowledge only once committed: the group commit resolves this future.
        seqs = await asyncio.wrap_future(store.append_async(batch))
        service = state["service"]  # (a reload may have swapped it meanwhile)
        try:
            changes = service.apply(batch)
        except Exception as exc:  # noqa: BLE001 - the model took the check, not the change
            return await refused_after_logging(batch, seqs, exc)
        metrics.ratings.inc(len(batch))
        metrics.serving(service)
        return json({"accepted": len(batch), **changes, "model_version": service.version})

    async def refused_after_logging(batch: list, seqs: list, exc: Exception) -> Response:
        """The model passed the batch's check but failed to apply it: unlog it, say so.

        Its rows go to the quarantine (a restart would meet them otherwise); the
        model is unchanged (the apply is all or nothing).
        """
        logger.error(
            "the model failed to apply %d logged ratings (seq %s...); moving them to the "
            "quarantine", len(batch), seqs[:1], exc_info=exc)
        reason = f"{type(exc).__name__}: {exc}"[:500]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, store.quarantine, [(s, reason) for s in seqs])
        except Exception:  # noqa: BLE001 - the next start quarantines them instead
            logger.exception("could not quarantine them")
        metrics.quarantined.set(store.quarantined)
        status = 400 if isinstance(exc, MatfactError) else 500
        return json({"detail": f"the model could not apply these ratings "
                               f"({type(exc).__name__}: {str(exc)[:200]}); they were not "
                               f"kept"}, status)

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
            metrics.quarantined.set(store.count_quarantined())
        except (OSError, MatfactError, ValueError) as exc:
            logger.error("reload failed: %s", exc)
            raise HTTPException(500, f"reload failed, still serving the previous model: "
                                     f"{type(exc).__name__}: {str(exc)[:300]}") from None
        finally:
            reload_lock.release()
        return json({"model_version": fresh.version, "replayed": fresh.applied_seq})

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={code: answer for code, answer in answers(ErrorOut).items()
                        if code != 200})
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    page = resources.files("matfact.serving").joinpath("web/index.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    assets = _docs_assets()
    if assets is None:
        logger.warning("the API page (/docs) needs the fastapi-offline package (the serve "
                       "extra): pip install 'matfact[serve]'")
    else:
        # Behind the guard like every route: with require_key, the key too.
        app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        if assets is None:
            return HTMLResponse(
                "<!DOCTYPE html><title>API page unavailable</title><p>The API page needs "
                "the <code>fastapi-offline</code> package (the <code>serve</code> extra): "
                "<code>pip install 'matfact[serve]'</code>. The schema is at "
                "<a href=\"openapi.json\">/openapi.json</a>.</p>", status_code=503)
        files = request.scope.get("root_path", "") + DOCS_ASSETS_PATH  # (behind a proxy)
        return get_swagger_ui_html(
            openapi_url=request.scope.get("root_path", "") + app.openapi_url,
            title=app.title, swagger_js_url=f"{files}/swagger-ui-bundle.js",
            swagger_css_url=f"{files}/swagger-ui.css",
            swagger_favicon_url=f"{files}/favicon.png")

    def fast_recommendations(user: str, n: int, exclude_seen: bool,
                             explain: int | None) -> bytes | None:
        try:
            return _dumps(state["service"].recommend(user, n, exclude_seen, explain))
        except MatfactError:
            return None  # (a model with no explanation): the route answers it, with a 400

    app.state.store = store
    app.state.services = state
    return _wrap(app, metrics, fast_recommendations, key=key_bytes, require_key=require_key)


#: Seconds the shutdown waits for the rating log's writer to commit what is queued.
_CLOSE_SECONDS = 4.0


def _dumps(content: Any) -> bytes:
    """JSON of an answer: orjson, or the standard module for what orjson cannot write.

    orjson refuses a lone surrogate in an echoed id (``"\\ud800"`` is valid JSON
    input) and integers past 64 bits; the standard library escapes the first and
    writes the second. Non-finite numbers become null either way.
    """
    import orjson

    try:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:
        return _stdlib_json.dumps(_finite(content), default=_tolist,
                                  ensure_ascii=True).encode("ascii")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _errors(errors: Any) -> list:
    """FastAPI's validation errors as the answer shows them: what they echo of the
    input is cut short (a scalar, at most 80 characters; nothing of a list or object)."""
    out = []
    for error in list(errors)[:20]:
        shown = error.get("input")
        entry = {"type": str(error.get("type", "")), "loc": [
            part if isinstance(part, (str, int)) else str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", ""))}
        if shown is None or isinstance(shown, (bool, float)):
            entry["input"] = shown
        elif isinstance(shown, int):
            entry["input"] = shown if -(2**63) <= shown < 2**64 else \
                f"an integer of {shown.bit_length()} bits"
        elif isinstance(shown, str):
            entry["input"] = shown if len(shown) <= 80 else shown[:80] + "…"
        out.append(entry)
    return out


def _wrap(app: Any, metrics: _Metrics, fast: Any, **guard_options: Any) -> Any:
    """The FastAPI app behind the guard, keeping ``.state`` and ``.openapi`` reachable."""
    guard = _Guard(app, metrics, fast, **guard_options)
    guard.state = app.state
    guard.fastapi = app
    return guard
