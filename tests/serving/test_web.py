"""The page at ``/`` and the API pages in a real headless browser.

Pick a user, rate, watch the list change; the rating control follows the model's
scale and step (a 0.5–4 model, a 1–10 model, an implicit one); ``/docs`` renders
with every request to another host blocked.

Playwright drives Debian's ``chromium`` (``make test`` installs it with apt where it
can; Playwright's own browser download is not reachable from these machines). The
browser tests skip, saying why, where no browser is available; the checks of the
API page's HTML and files run without one.
"""

from __future__ import annotations

import json
import re
import shutil
from types import SimpleNamespace
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.serving.conftest import API_KEY, Server

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_api = None
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
needs_browser = pytest.mark.skipif(
    sync_api is None or CHROMIUM is None,
    reason="playwright is not installed" if sync_api is None else
    "no chromium on PATH (make test installs Debian's with apt as root)")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def small_model(path, scale=None, implicit=False, declare_step=False):
    """A small model on 40 users × 60 items: ratings on ``scale``'s grid, or implicit."""
    import matfact
    from matfact import Interactions

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 41), 15)
    items = np.concatenate([rng.choice(np.arange(1, 61), 15, replace=False)
                            for _ in range(40)])
    if implicit:
        data = Interactions.from_arrays(users, items)
        model = matfact.ImplicitALS(n_factors=4, random_state=0)
    else:
        low, high, step = scale
        grid = np.arange(low, high + step / 2, step)
        data = Interactions.from_arrays(users, items, rng.choice(grid, len(users)),
                                        rating_scale=scale if declare_step else (low, high))
        model = matfact.BiasedMF(n_factors=4, max_iter=5, random_state=0)
    model.fit(data, progress=False).save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scales")
    # The half-star scale declares its step; the 1–10 one does not (the page's default).
    return {"half": small_model(folder / "half.zip", (0.5, 4.0, 0.5), declare_step=True),
            "ten": small_model(folder / "ten.zip", (1, 10, 1)),
            "implicit": small_model(folder / "implicit.zip", implicit=True)}


def _serve(model, tmp_path_factory):
    running = Server(model, tmp_path_factory.mktemp("log") / "ratings.sqlite").start()
    return running


@pytest.fixture(scope="module")
def half_server(models, tmp_path_factory):
    running = _serve(models["half"], tmp_path_factory)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ten_server(models, tmp_path_factory):
    running = _serve(models["ten"], tmp_path_factory)
    yield running
    running.stop()


# ---------------------------------------------------------------- without a browser
def test_rating_scale_reads_the_model_scale_with_or_without_a_step():
    from matfact.serving.app import rating_scale

    def model(scale, step=None):
        return SimpleNamespace(rating_scale_=scale, rating_step_=step)

    assert rating_scale(model(None)) is None
    assert rating_scale(SimpleNamespace()) is None
    assert rating_scale(model((0.5, 4))) == {"min": 0.5, "max": 4.0, "step": None}
    assert rating_scale(model((1, 10, 1))) == {"min": 1.0, "max": 10.0, "step": 1.0}
    assert rating_scale(model((0.5, 5.0, 0.5))) == {"min": 0.5, "max": 5.0, "step": 0.5}
    assert rating_scale(model((1, 5, None)))["step"] is None
    assert rating_scale(model((0.5, 4.0), 0.5)) == {"min": 0.5, "max": 4.0, "step": 0.5}
    assert rating_scale(model((1.0, 10.0), None))["step"] is None
    assert rating_scale(model(None, 0.5)) is None  # implicit: no scale, whatever else


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)


@pytest.fixture(scope="module")
def in_process(models, tmp_path_factory):
    """The half-star model's app in this process, with and without ``require_key``."""
    from starlette.testclient import TestClient

    from matfact.serving.app import create_app

    folder = tmp_path_factory.mktemp("apps")
    clients = {}
    with TestClient(create_app(models["half"], folder / "a.sqlite", api_key=API_KEY)) as open_, \
            TestClient(create_app(models["half"], folder / "b.sqlite", api_key=API_KEY,
                                  require_key=True)) as keyed:
        clients.update(open=open_, keyed=keyed)
        yield clients


def test_health_states_the_feedback_and_the_rating_scale(in_process):
    health = in_process["open"].get("/health").json()
    assert health["feedback"] == "explicit"
    assert health["rating_scale"] == {"min": 0.5, "max": 4.0, "step": 0.5}
    assert health["explains"] is True  # the page asks for "because you rated ..."
    schema = in_process["open"].get("/openapi.json").json()
    assert {"feedback", "rating_scale", "explains"} <= set(
        schema["components"]["schemas"]["HealthOut"]["properties"])


def test_the_api_page_names_no_other_host_and_its_files_are_served(in_process):
    client = in_process["open"]
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text  # no CDN, no web font: nothing outside this server
    urls = [a or b for a, b in _asset_urls(page.text)]
    scripts = [u for u in urls if u.endswith(".js")]
    assert len(scripts) == 1 and "/openapi.json" in urls and len(urls) == 4
    for url in urls:
        assert url.startswith("/"), url
        answer = client.get(url)
        assert answer.status_code == 200 and len(answer.content) > 0, url
    assert client.get(scripts[0]).headers["content-type"].startswith("text/javascript")


def test_with_require_key_the_api_page_and_its_files_need_the_key(in_process):
    client = in_process["keyed"]
    for path in ("/docs", "/docs-assets/swagger-ui-bundle.js",
                 "/docs-assets/swagger-ui.css", "/openapi.json", "/"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"X-API-Key": API_KEY}).status_code == 200, path
    assert client.get("/health").status_code == 200


# ---------------------------------------------------------------- in a browser
@pytest.fixture(scope="module")
def browser():
    if sync_api is None or CHROMIUM is None:
        pytest.skip("no browser")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def browse(browser):
    """``browse(url)``: a fresh page at ``url``, every request off this machine aborted.

    ``browse.outside`` lists the URLs the pages tried to reach elsewhere.
    """
    contexts = []

    def only_loopback(route):
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            opened.outside.append(route.request.url)
            route.abort()

    def opened(url, **options):
        context = browser.new_context()
        contexts.append(context)
        context.route("**/*", only_loopback)
        page = context.new_page()
        page.set_default_timeout(20_000)
        for pattern, handler in options.get("routes", {}).items():
            page.route(pattern, handler)
        page.goto(url)
        return page

    opened.outside = []
    yield opened
    for context in contexts:
        context.close()
    assert opened.outside == []


@pytest.fixture
def page(browse, server):
    return browse(server.url + "/")


def titles(page) -> list[str]:
    return page.locator("#list li .title").all_inner_texts()


def offered(page) -> list[float]:
    """The ratings the first item's control offers."""
    return [float(r) for r in page.locator("#list li").first.locator(
        "button.rate").evaluate_all("bs => bs.map(b => b.dataset.rating)")]


def show_user(page, user):
    page.fill("#user", str(user))
    page.fill("#key", API_KEY)
    page.click("#load")
    page.wait_for_selector(f"#status:has-text('Top 10 for user {user}')")


def rate_first(page, rating, endpoint="/ratings"):
    """Click ``rating`` on the first item; the request the page sent and the answer."""
    with page.expect_response(lambda r: r.url.endswith(endpoint)
                              and r.request.method == "POST") as answer:
        page.locator("#list li").first.locator(f"button.rate[data-rating='{rating}']").click()
    response = answer.value
    return json.loads(response.request.post_data), response


@needs_browser
def test_a_known_user_rates_and_the_list_changes(page, server):
    page.wait_for_selector("#model:has-text('BiasedMF')")
    page.fill("#user", "196")
    page.fill("#key", API_KEY)
    page.click("#load")
    page.wait_for_selector("#list li")
    before = titles(page)
    assert len(before) == 10 and page.inner_text("#status").startswith("Top 10 for user 196")
    assert offered(page) == [1, 2, 3, 4, 5]  # ML-100K's 1–5 stars
    # One star for the first film: it is rated, so it leaves the list.
    page.locator("#list li").first.locator("button.rate", has_text="1★").click()
    page.wait_for_function("t => document.querySelector('#list li .title').textContent !== t",
                           arg=before[0])
    after = titles(page)
    assert before[0] not in after and len(after) == 10
    with server.client() as client:
        logged = client.get("/metrics").text
    assert "matfact_ratings_ingested_total 1.0" in logged


@needs_browser
def test_a_new_user_gets_the_newcomer_list_then_one_of_their_own(page, server,
                                                                  trained_model):
    import matfact

    page.click("#new")
    page.wait_for_selector("#list li")
    popular = titles(page)
    model = matfact.load(trained_model)
    ids, _ = model.recommend_for_history([], [], n=10)
    assert popular == model.item_titles_[model.item_index_.get_indexer(ids)].tolist()
    for _ in range(3):
        first = titles(page)[0]
        page.locator("#list li").first.locator("button.rate", has_text="5★").click()
        page.wait_for_function("t => document.querySelector('#list li .title').textContent"
                               " !== t", arg=first)
    assert "folded in, nothing stored" in page.inner_text("#status")
    assert titles(page) != popular
    with server.client() as client:
        assert "matfact_ratings_ingested_total 0.0" in client.get("/metrics").text


@needs_browser
def test_each_item_says_because_you_rated_what_the_user_rated(page, server, trained_model):
    """Issue 22: "because you rated X, Y" under each item, titles of the user's own ratings."""
    import matfact

    model = matfact.load(trained_model)
    rated = set(model.item_titles_[model.history(model.user_index_.code(196))[0]].tolist())
    page.wait_for_selector("#model:has-text('BiasedMF')")
    with page.expect_request(lambda r: "/users/196/recommendations" in r.url) as asked:
        show_user(page, 196)
    assert "explain=3" in asked.value.url
    lines = page.locator("#list li .because").all_inner_texts()
    assert len(lines) == 10
    with server.client() as client:
        answer = client.get("/users/196/recommendations", params={"n": 10, "explain": 3}).json()
    for line, because in zip(lines, answer["because"], strict=True):
        assert line.startswith("because you rated ")
        named = [c["title"] for c in because if c["contribution"] > 0]
        assert line == "because you rated " + ", ".join(named)
        assert named and set(named) <= rated  # films user 196 rated, by title
    # A newcomer: the film just rated explains the new list.
    page.click("#new")
    page.wait_for_selector("#status:has-text('Picks for someone new')")
    assert page.locator("#list li .because").count() == 0  # the popularity fallback
    first = titles(page)[0]
    page.locator("#list li").first.locator("button.rate", has_text="5★").click()
    page.wait_for_selector("#list li .because")
    assert all(line == f"because you rated {first}"
               for line in page.locator("#list li .because").all_inner_texts())


@needs_browser
def test_a_half_star_model_offers_its_scale_and_takes_its_top(browse, half_server):
    page = browse(half_server.url + "/")
    page.wait_for_selector("#model:has-text('ratings 0.5–4 by 0.5')")
    show_user(page, 3)
    assert offered(page) == [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4]  # no 4.5★ nor 5★ to refuse
    sent, answer = rate_first(page, 4)
    assert sent["ratings"][0]["rating"] == 4 and answer.status == 200
    assert answer.json()["accepted"] == 1
    page.click("#new")  # a newcomer's half star is folded in as well
    page.wait_for_selector("#status:has-text('Picks for someone new')")
    sent, answer = rate_first(page, 0.5, "/recommendations")
    assert sent["ratings"] == [0.5] and answer.status == 200


@needs_browser
def test_a_one_to_ten_model_takes_ten_and_the_control_follows_a_step(browse, ten_server):
    page = browse(ten_server.url + "/")
    page.wait_for_selector("#model:has-text('ratings 1–10 by 1')")
    show_user(page, 5)
    assert offered(page) == list(range(1, 11))
    sent, answer = rate_first(page, 10)
    assert sent["ratings"][0]["rating"] == 10 and answer.status == 200

    def with_step(step):
        def handler(route):
            response = route.fetch()
            health = response.json()
            health["rating_scale"]["step"] = step
            route.fulfill(response=response, json=health)
        return {"**/health": handler}

    # A scale with a step: the buttons are its grid.
    page = browse(ten_server.url + "/", routes=with_step(3))
    page.wait_for_selector("#model:has-text('ratings 1–10 by 3')")
    show_user(page, 6)
    assert offered(page) == [1, 4, 7, 10]
    sent, answer = rate_first(page, 7)
    assert sent["ratings"][0]["rating"] == 7 and answer.status == 200
    # Too many values for buttons: a number field bounded by the scale.
    page = browse(ten_server.url + "/", routes=with_step(0.25))
    show_user(page, 7)
    field = page.locator("#list li").first.locator("input.rating")
    assert [field.get_attribute(a) for a in ("min", "max", "step")] == ["1", "10", "0.25"]
    field.fill("10.5")
    page.locator("#list li").first.locator("button.rate").click()
    page.wait_for_selector("#status.error:has-text('from 1 to 10 by 0.25')")
    field.fill("7.25")
    with page.expect_response(lambda r: r.url.endswith("/ratings")) as answer:
        page.locator("#list li").first.locator("button.rate").click()
    assert json.loads(answer.value.request.post_data)["ratings"][0]["rating"] == 7.25
    assert answer.value.status == 200


@needs_browser
def test_an_implicit_model_gets_a_like(browse, models, tmp_path_factory):
    running = _serve(models["implicit"], tmp_path_factory)
    try:
        page = browse(running.url + "/")
        page.wait_for_selector("#model:has-text('likes (implicit feedback)')")
        show_user(page, 8)
        assert page.locator("#list li").first.locator("button.rate").all_inner_texts() == \
            ["♥ like"]
        sent, answer = rate_first(page, 1)
        assert sent["ratings"][0]["rating"] == 1 and answer.status == 200
    finally:
        running.stop()


@needs_browser
def test_a_model_without_explanations_gets_its_list_and_no_because(browse, tmp_path_factory):
    """Popularity explains nothing: /health says so and the page does not ask (no 400)."""
    import matfact
    from matfact import Interactions

    path = tmp_path_factory.mktemp("popular") / "popularity.zip"
    rng = np.random.default_rng(1)
    matfact.Popularity().fit(Interactions.from_arrays(
        rng.integers(1, 30, 300), rng.integers(1, 40, 300), duplicates="sum"),
        progress=False).save(path)
    running = _serve(path, tmp_path_factory)
    try:
        page = browse(running.url + "/")
        with page.expect_request(lambda r: "/recommendations" in r.url) as asked:
            show_user(page, 3)
        assert "explain" not in asked.value.url
        assert page.locator("#list li").count() == 10
        assert page.locator("#list li .because").count() == 0
        assert "error" not in (page.get_attribute("#status", "class") or "")
    finally:
        running.stop()


@needs_browser
def test_the_api_page_renders_with_no_other_host_reachable(browse, half_server):
    page = browse(half_server.url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock")
    shown = set(page.locator(".swagger-ui .opblock-summary-path").all_inner_texts())
    assert {"/health", "/users/{user}/recommendations", "/ratings"} <= shown
    assert page.locator(".swagger-ui .errors-wrapper").count() == 0
    # Try one out: the schema's request reaches this server and its answer is shown.
    page.locator(".opblock-summary-path", has_text="/health").click()
    page.click("button.try-out__btn")
    page.click("button.execute")
    # Waited for, not counted at once: the documented responses table also says 200, and
    # the live answer is drawn a moment after the request returns.
    page.wait_for_selector(".live-responses-table:has-text('rating_scale')")
    assert "200" in page.locator(".live-responses-table tbody .response-col_status") \
        .first.inner_text()
    assert browse.outside == []  # nothing was even tried elsewhere
