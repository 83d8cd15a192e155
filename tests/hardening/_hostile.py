"""Hostile HTTP requests for the recommendation service (issue 19), and how to send them.

:func:`families` gives hypothesis strategies of requests an attacker (or a broken client)
might send to ``matfact serve``: ids from every Unicode category, lone surrogates,
text that looks like a number without being one (``--5``, ``²``, ``٣``, ``1_000``,
60,000 digits), ids past the length bound, extreme floats (``1e999`` is infinity to a
JSON parser, ``-0.0``, ``1e308``, NaN), huge integers, bodies of every wrong type, large
and deeply nested bodies, bodies over the size limit with and without a length, bad
keys, and a few requests malformed at the HTTP level (sent on a raw socket). Mixed in:
ordinary reads and writes with ids the model knows, so that writes are accepted too.

:func:`send` sends one and returns the status code (0: no answer).
"""

from __future__ import annotations

import json
import math
import socket
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

#: Every Unicode general category, surrogates (Cs) included.
CATEGORIES = ("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd",
              "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc",
              "Cf", "Cs", "Co", "Cn")

#: Text that ``int()`` reads (or misreads), or a person would, but that is no integer id.
NUMERIC_LOOKING = ("--5", "-5", "+5", "++5", " 42 ", "42 ", "4 2", "\u00b2", "\u0663",
                   "\u0663\u0664", "\uff11\uff12", "1_000", "1e3", "0x1f", "0o7", "0b1", "1.0",
                   "5.", ".5", "NaN", "nan", "inf", "-inf", "Infinity", "-0", "+0", "0" * 30 +
                   "42", "9" * 19, "9" * 20, "-" + "9" * 19, "\u00bd", "\u216b", "\U0001d7d7",
                   "\u0665\u0666", "1,000", "1 000", "\u200b42", "42\u200b", "\u0034\u20e3",
                   "9" * 60_000, "-" + "9" * 4_301, "1" + "0" * 300)

#: Floats at and past the edges (``float("inf")`` is written ``Infinity``, which the
#: server's JSON parser reads as infinity, as it does ``1e999``).
EXTREME_FLOATS = (1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324,
                  2.2250738585072014e-308, -0.0, 0.0, math.inf, -math.inf, math.nan, 0.5,
                  4.999999999999999, 5.000000000000001, 1e-300, 2**53 + 1.0)

#: Integers at and past the 64-bit edges.
EDGE_INTEGERS = (0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64,
                 10**30, -(10**30), 10**400)

#: Requests malformed at the HTTP level, sent as they are on a socket.
RAW_REQUESTS = (
    b"GET /users/\xff\xfe/recommendations HTTP/1.1\r\nHost: x\r\n",
    b"GET /users/\xed\xa0\x80/recommendations HTTP/1.1\r\nHost: x\r\n",
    b"GET /items/\xc0\xaf/similar HTTP/1.1\r\nHost: x\r\n",
    b"POST /ratings HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n",
    b"POST /ratings HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-API-Key: \xff\xfe\x00\x01\r\n",
    b"POST /ratings HTTP/1.1\r\nHost: x\r\nX-API-Key: \xc3\xa9\xed\xa0\x80\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n",
    b"GET /users/1/recommendations?n=\xff HTTP/1.1\r\nHost: x\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n",
    b"BREW /coffee HTTP/1.1\r\nHost: x\r\n",
    b"GET /users/%00/recommendations HTTP/1.1\r\nHost: x\r\n",
    b"GET /users/" + b"7" * 60_000 + b"/recommendations HTTP/1.1\r\nHost: x\r\n",
)

#: Bodies that are not the JSON a route expects (JSON parsers' edge cases included).
MALFORMED_BODIES = (
    b"", b"{", b"}", b"null", b"[]", b"{}", b"1e999", b"NaN", b"\"\\ud800\"", b"\xff\xfe{",
    b"\xef\xbb\xbf{}", b"{\"a\": 1, \"a\": 2}", b"[" * 100_000 + b"]" * 100_000,
    b"{\"users\": " + b"[" * 50_000 + b"1" + b"]" * 50_000 + b", \"items\": [1]}",
    b"{\"ratings\": " + b"[" * 3_000 + b"]" * 3_000 + b"}",
    b"{\"users\": [" + b"9" * 60_000 + b"], \"items\": [1]}",
    b"{\"users\": [1], \"items\": [1e999]}",
    b"{\"ratings\": [{\"user\": 1, \"item\": 1, \"rating\": 1e999}]}",
    b"{\"ratings\": [{\"user\": 1, \"item\": 1, \"rating\": 3, \"timestamp\": 1e999}]}",
    b"{\"ratings\": [{\"user\": 1, \"item\": 1, \"rating\": -0.0, \"timestamp\": -1e999}]}",
    b"{\"ratings\": [{\"user\": 1, \"item\": 1, \"rating\": " + b"9" * 5000 + b"}]}",
    b"{\"ratings\": [{\"user\": 1, \"rating\": 1e999}]}",
    b"{\"ratings\": [{\"user\": \"\\ud800\", \"item\": 1, \"rating\": 3}]}",
    b"{\"ratings\": [{\"user\": 1, \"item\": 1, \"rating\": \"\\udfff\"}]}",
    b"{\"items\": [1, 2], \"ratings\": [NaN, Infinity], \"n\": 5}",
    b"{\"items\": [\"\\u0000\"], \"n\": 5}",
    b"\x00" * 1000,
    b"{\"users\": [\"" + b"\\u00e9" * 5000 + b"\"], \"items\": [1]}",
)


@dataclass
class Call:
    """One request: ``kind`` says which family of the corpus it belongs to."""

    kind: str
    method: str
    path: str
    body: bytes | None = None
    key: bytes | None = None
    chunked: bool = False
    content_type: str | None = "application/json"
    raw: bytes | None = None

    def __repr__(self) -> str:  # hypothesis shows failing examples; keep them short
        return f"Call({_describe(self)!r})"


@dataclass
class Tally:
    """What a run sent and got back."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    server_errors: list = field(default_factory=list)
    no_answer: list = field(default_factory=list)
    raw_statuses: Counter = field(default_factory=Counter)
    accepted_writes: int = 0

    def add(self, call: Call, status: int) -> None:
        self.sent += 1
        self.statuses[status] += 1
        self.by_kind[call.kind] += 1
        if call.kind.startswith("write") and call.path == "/ratings" and status == 200:
            self.accepted_writes += 1
        if status >= 500:
            self.server_errors.append((status, _describe(call)))
        elif status == 0 and call.raw is None:
            self.no_answer.append(_describe(call))
        if call.raw is not None:
            self.raw_statuses[status] += 1

    def summary(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (f"{self.sent} requests ({codes}); {self.accepted_writes} writes accepted; "
                f"{len(self.server_errors)} answers >= 500")


def _describe(call: Call) -> str:
    body = call.raw if call.raw is not None else call.body
    return f"{call.method} {call.path[:120]} body={body[:200]!r}" if body else \
        f"{call.method} {call.path[:120]}"


def _dumps(value: Any) -> bytes:
    # ensure_ascii: a lone surrogate goes out as "\ud800", valid JSON; NaN and infinities as
    # NaN / Infinity, which Python's JSON parser (the server's) reads back.
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode("ascii")


def _quote(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe=safe)


# ---------------------------------------------------------------------- strategies
def unicode_text(max_size: int = 12) -> st.SearchStrategy[str]:
    """Text drawn from one Unicode category (surrogates, controls, unassigned included)."""
    return st.sampled_from(CATEGORIES).flatmap(
        lambda category: st.text(st.characters(categories=[category]), min_size=1,
                                 max_size=max_size))


def surrogates() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["\ud800", "\udfff", "a\ud800b", "\udc00\ud800", "\ud83d", "x\udfff",
                         "\ud83d\ude00\ud800"]),
        st.text(st.characters(categories=["Cs"]), min_size=1, max_size=4),
        st.tuples(st.text(max_size=5), st.text(st.characters(categories=["Cs"]), min_size=1,
                                               max_size=2), st.text(max_size=5)).map("".join))


def long_ids() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([255, 256, 257, 1_000, 20_000, 200_000]).map(lambda n: "x" * n),
        st.integers(200, 3_000).map(lambda n: "\u00e9" * n),
        st.integers(250, 600).map(lambda n: "e\u0301" * (n // 2)),  # NFC makes it shorter
        st.sampled_from(["\U0001f600" * 300, "\u0663" * 1000]))


def hostile_ids(known: list) -> st.SearchStrategy[Any]:
    """An id as a client might send it: known, unknown, or not an id at all."""
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(known).map(str),
        st.sampled_from(EDGE_INTEGERS),
        st.integers(),
        unicode_text(),
        surrogates(),
        st.sampled_from(NUMERIC_LOOKING),
        long_ids(),
        st.text(max_size=20),
        st.from_regex(r"[+\-]{0,2}[0-9\u0660-\u0669\uff10-\uff19\u00b2_., ]{1,12}",
                      fullmatch=True))


def odd_values() -> st.SearchStrategy[Any]:
    """JSON values of the wrong type for an id or a number."""
    return st.one_of(st.none(), st.booleans(), st.sampled_from(EXTREME_FLOATS),
                     st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                         st.integers(),
                                                                         max_size=2))


def numbers() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(1, 5), st.floats(1, 5), st.sampled_from(EXTREME_FLOATS),
                     st.sampled_from(EDGE_INTEGERS), st.floats(allow_nan=True,
                                                               allow_infinity=True))


def families(users: list, items: list) -> list[tuple[int, st.SearchStrategy[Call]]]:
    """``(weight per mille, strategy of requests)`` of each family of hostile (or ordinary)
    requests; ``users``/``items`` are ids the model knows."""
    an_id = st.one_of(hostile_ids(users), odd_values().filter(lambda v: v is not None))
    a_user = st.one_of(st.sampled_from(users), hostile_ids(users))
    an_item = st.one_of(st.sampled_from(items), hostile_ids(items))
    queries = st.sampled_from(["", "n=5", "n=0", "n=1001", "n=-1", "n=1e3", "n=\u0663",
                               "n=5&exclude_seen=maybe", "exclude_seen=false", "n=" + "9" * 30,
                               "n=%00", "x=1", "n=100&exclude_seen=0", "n=5&n=6"])
    key = st.sampled_from([b"GOOD", b"GOOD", b"GOOD", None, b"wrong-key-0000000",
                           "cl\u00e9-\u00fc".encode(), b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8"])

    def recommendations(draw_user, query):
        return Call("read path", "GET", f"/users/{_quote(str(draw_user))}/recommendations"
                    + (f"?{_quote(query, '=&%')}" if query else ""))

    def similar(item, query):
        return Call("read path", "GET", f"/items/{_quote(str(item))}/similar"
                    + (f"?{_quote(query, '=&%')}" if query else ""))

    def predict(pairs, extra):
        users_ = [u for u, _ in pairs] + extra
        return Call("read body", "POST", "/predict",
                    _dumps({"users": users_, "items": [i for _, i in pairs]}))

    def history(known, hostile, values, n):
        body: dict = {"items": known + hostile, "n": n}
        if values is not None:
            body["ratings"] = values
        return Call("read body", "POST", "/recommendations", _dumps(body))

    def ratings(rows, key_):
        return Call("write", "POST", "/ratings", _dumps({"ratings": rows}), key=key_)

    rating_rows = st.lists(st.fixed_dictionaries(
        {"user": a_user, "item": an_item, "rating": st.one_of(st.integers(1, 5), numbers())},
        optional={"timestamp": st.one_of(st.integers(0, 2_000_000_000), numbers(),
                                         st.none()),
                  "extra": odd_values()}), min_size=1, max_size=5)
    good_rows = st.lists(st.fixed_dictionaries(
        {"user": st.one_of(st.sampled_from(users), st.integers(10**6, 10**7)),
         "item": st.sampled_from(items), "rating": st.integers(1, 5)}), min_size=1,
        max_size=3)
    malformed = st.builds(
        lambda path, body, ctype: Call("malformed", "POST", path, body, key=b"GOOD",
                                       content_type=ctype),
        st.sampled_from(["/ratings", "/predict", "/recommendations"]),
        st.sampled_from(MALFORMED_BODIES),
        st.sampled_from(["application/json", "application/json", "text/plain", None,
                         "application/json; charset=latin-1", "multipart/form-data"]))
    large = st.one_of(
        st.builds(lambda n: Call("large", "POST", "/predict", _dumps(
            {"users": list(range(n)), "items": [1] * n})), st.sampled_from([10_000, 10_001])),
        st.builds(lambda n, chunked: Call("large", "POST", "/ratings", b" " * n, key=b"GOOD",
                                          chunked=chunked),
                  st.sampled_from([2 * 1024 * 1024 + 1, 3 * 1024 * 1024]), st.booleans()),
        st.builds(lambda chunked: Call("large", "POST", "/predict", _dumps(
            {"users": ["u" * 200] * 9_000, "items": ["i" * 10] * 9_000}), chunked=chunked),
            st.booleans()),
        st.builds(lambda depth: Call("large", "POST", "/ratings", b'{"ratings": [{"user": 1, '
                                     b'"item": 1, "rating": 3, "extra": ' + _nested(depth)
                                     + b"}]}", key=b"GOOD"),
                  st.sampled_from([100, 900, 5_000, 200_000])))
    other = st.one_of(
        st.sampled_from([Call("other", "GET", "/health"), Call("other", "GET", "/metrics"),
                         Call("other", "GET", "/openapi.json"), Call("other", "GET", "/"),
                         Call("other", "GET", "/no/such/route"),
                         Call("other", "DELETE", "/ratings", key=b"GOOD"),
                         Call("other", "PUT", "/predict", b"{}"),
                         Call("other", "POST", "/admin/reload", key=b"wrong-key-0000000"),
                         Call("other", "GET", "/users//recommendations"),
                         Call("other", "GET", "/users/%2F%2E%2E/recommendations"),
                         Call("other", "GET", "/items/%00/similar")]),
        st.sampled_from(RAW_REQUESTS).map(lambda raw: Call("raw", "RAW", "", raw=raw)))
    return [  # (per mille, strategy): mostly ordinary-sized, a few large bodies
        (180, st.builds(recommendations, a_user, queries)),
        (90, st.builds(similar, an_item, queries)),
        (150, st.builds(predict, st.lists(st.tuples(an_id, an_id), min_size=1, max_size=20),
                        st.lists(an_id, max_size=1))),
        (120, st.builds(history, st.lists(st.sampled_from(items), max_size=4),
                        st.lists(an_id, max_size=4),
                        st.one_of(st.none(), st.lists(numbers(), max_size=8)),
                        st.one_of(st.integers(1, 20), st.sampled_from([0, 1001, -1, 2**70])))),
        (200, st.builds(ratings, rating_rows, key)),
        (100, st.builds(lambda rows: Call("write good", "POST", "/ratings", _dumps(
            {"ratings": rows}), key=b"GOOD"), good_rows)),
        (80, malformed),
        (60, other),
        (20, large),
    ]


def _nested(depth: int) -> bytes:
    """JSON text of objects and lists nested ``depth`` deep (too deep to build as objects)."""
    opening = b"".join(b"[" if k % 2 else b'{"a": ' for k in range(depth))
    closing = b"".join(b"]" if k % 2 else b"}" for k in reversed(range(depth)))
    return opening + b"1" + closing


# ---------------------------------------------------------------------- sending
def send(client: Any, call: Call, key: bytes, *, host: str = "127.0.0.1",
         port: int = 0) -> int:
    """Send ``call`` (``GOOD`` stands for the real key); its status code, or 0 if none."""
    import httpx

    if call.raw is not None:
        return _send_raw(call.raw, host, port, key)
    if len(call.path) > 60_000 and call.body is None:  # past what httpx sends
        return _send_raw(f"{call.method} {call.path} HTTP/1.1\r\nHost: x\r\n".encode(
            "ascii"), host, port, key)
    headers: dict[str, Any] = {}
    if call.key is not None:
        headers["X-API-Key"] = key if call.key == b"GOOD" else call.key
    if call.content_type is not None and call.body is not None:
        headers["Content-Type"] = call.content_type
    content: Any = call.body
    if call.chunked and call.body is not None:
        body = call.body
        content = (body[k:k + 65536] for k in range(0, len(body), 65536))
    try:
        return client.request(call.method, call.path, content=content, headers=headers
                              ).status_code
    except httpx.TransportError:
        return 0


def _send_raw(head: bytes, host: str, port: int, key: bytes) -> int:
    lower = head.lower()
    if b"chunked" in lower:
        body = b"zz\r\nxx\r\n"  # not a chunk size
    elif b"content-length: 5" in lower:
        body = b"hello"
    elif b"content-length: 2\r\n" in lower:
        body = b"{}"
    else:
        body = b""
    request = head + b"Connection: close\r\n\r\n" + body
    try:
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(request)
            answer = b""
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return 0
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
