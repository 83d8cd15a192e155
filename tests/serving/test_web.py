"""The page at ``/`` in a real headless browser: pick a user, rate, watch the list change.

Playwright drives Debian's ``chromium`` (``make test`` installs it with apt where it
can; Playwright's own browser download is not reachable from these machines). The
test skips, saying why, where no browser is available.
"""

from __future__ import annotations

import shutil

import pytest

from tests.serving.conftest import API_KEY

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (make test "
                                                         "installs Debian's with apt as root)")


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(server.url + "/")
            yield page
        finally:
            browser.close()


def titles(page) -> list[str]:
    return page.locator("#list li .title").all_inner_texts()


def test_a_known_user_rates_and_the_list_changes(page, server):
    page.wait_for_selector("#model:has-text('BiasedMF')")
    page.fill("#user", "196")
    page.fill("#key", API_KEY)
    page.click("#load")
    page.wait_for_selector("#list li")
    before = titles(page)
    assert len(before) == 10 and page.inner_text("#status").startswith("Top 10 for user 196")
    # One star for the first film: it is rated, so it leaves the list.
    page.locator("#list li").first.locator("button.rate", has_text="1★").click()
    page.wait_for_function("t => document.querySelector('#list li .title').textContent !== t",
                           arg=before[0])
    after = titles(page)
    assert before[0] not in after and len(after) == 10
    with server.client() as client:
        logged = client.get("/metrics").text
    assert "matfact_ratings_ingested_total 1.0" in logged


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
