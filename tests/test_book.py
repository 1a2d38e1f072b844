"""The book site (tools/book.py), built from the stored notebooks and read in a real browser.

The site is built once per run into _build/book (what `make book` builds), served on localhost
and opened page by page in Debian's Chromium (Playwright, as tests/test_browser.py does). Checked:
Sphinx gave no warning; every page loads with no console error, no page error and no failed
request (so nothing is fetched from another host: the site works offline); every lecture page
shows its figures (each image decoded); every page's equations, the lectures' and the
docstrings', are typeset by MathJax without error and fit the text column; the navigation lists
every lecture; every internal link and anchor resolves. Screenshots of the landing page and of
lecture 01 go to test-output/book/.
"""

import functools
import http.server
import json
import re
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import book  # noqa: E402
from test_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

OUTPUT = ROOT / "test-output" / "book"
LECTURES = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def site() -> Path:
    return book.build(ROOT / "_build" / "book")


class _Links(HTMLParser):
    """The ids a page defines and the addresses it refers to."""

    def __init__(self):
        super().__init__()
        self.ids, self.refs = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.refs.append(attrs[key])


def _parse(path: Path) -> _Links:
    links = _Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_every_internal_link_and_anchor_resolves(site):
    parsed = {page: _parse(page) for page in book.site_pages(site)}
    broken = []
    for page, links in parsed.items():
        for ref in links.refs:
            url = urlparse(ref)
            if url.scheme or url.netloc or ref.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)} -> {ref}")
            elif url.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(url.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)} -> {ref} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_the_site_has_every_lecture_and_module(site):
    for name in LECTURES:
        assert (site / "lectures" / f"{name}.html").exists(), name
    modules = [p.stem for p in (ROOT / "course_utils").glob("*.py") if not p.stem.startswith("_")]
    for name in modules:
        page = (site / "api" / f"{name}.html").read_text(encoding="utf-8")
        assert f'id="module-course_utils.{name}"' in page, f"{name}: autodoc rendered nothing"
    for page in ("gallery", "running"):
        assert (site / f"{page}.html").exists(), page


def test_the_build_has_no_sphinx_warnings(site):
    warnings = (site.parent / "warnings.txt").read_text(encoding="utf-8").strip()
    assert not warnings, f"Sphinx warned:\n{warnings}"


# The modules whose docstrings state a method's equations: their pages must typeset them (the
# browser test checks that MathJax does), not show plain-text formulas.
EQUATIONS = ("ascent", "attribution", "cam", "deconv", "gradients", "lrp", "perturbation")


def test_the_methods_equations_are_mathematics_not_plain_text(site):
    for name in EQUATIONS:
        page = (site / "api" / f"{name}.html").read_text(encoding="utf-8")
        assert 'class="math' in page, f"api/{name}: no equation is marked up as mathematics"
    for path in (site / "api").glob("*.html"):
        page = path.read_text(encoding="utf-8")
        assert "<blockquote" not in page, (
            f"api/{path.name}: an indented block (a plain-text formula?) became a quotation")


def test_widgets_say_where_they_work_instead_of_showing_their_repr(site):
    widgets = sum(
        book.WIDGET_MIME in output.get("data", {})
        for nb in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for output in cell.get("outputs", []))
    notes = 0
    for path in (site / "lectures").glob("*.html"):
        page = path.read_text(encoding="utf-8")
        assert "children=(" not in page, f"{path.name} shows a widget's Python repr"
        notes += page.count(book.WIDGET_NOTE)
    assert widgets > 0 and notes == widgets


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import Error, sync_playwright

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install it with `apt-get install chromium`")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=CHROMIUM_ARGS, headless=True)
        except Error as error:
            pytest.skip(f"{CHROMIUM} could not be launched: {error}")
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def _open(page, url: str) -> list[str]:
    """Load `url`; return every console error, page error and failed request it caused."""
    problems = []

    def console(message):
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def failed(request):
        # A request the next navigation cancels (the favicon, often) is not a failure.
        if "ERR_ABORTED" not in (request.failure or ""):
            problems.append(f"failed: {request.url} ({request.failure})")

    def response(answer):
        if answer.status >= 400:
            problems.append(f"HTTP {answer.status}: {answer.url}")

    handlers = {"console": console, "response": response,
                "pageerror": lambda error: problems.append(f"page error: {error}"),
                "requestfailed": failed}
    for event, handler in handlers.items():
        page.on(event, handler)
    try:
        page.goto(url, wait_until="load")
    finally:
        for event, handler in handlers.items():
            page.remove_listener(event, handler)
    return problems


def test_every_page_loads_cleanly_and_lectures_show_figures_and_equations(site, served, page):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    failures = []
    # The landing page first: the theme remembers the sidebar's scrolling from page to page.
    for path in sorted(book.site_pages(site), key=lambda p: (p.name != "index.html", p)):
        relative = path.relative_to(site).as_posix()
        problems = _open(page, urljoin(served, relative))
        failures += [f"{relative}: {p}" for p in problems]
        if relative.startswith("lectures/"):
            images = page.evaluate("() => [...document.querySelectorAll('article img')]"
                                   ".map(i => i.complete && i.naturalWidth > 0)")
            if not images or not all(images):
                failures.append(f"{relative}: {images.count(False)} of {len(images)} figures "
                                "did not render")
        maths = page.locator("article .math").count()
        if maths:
            try:
                page.wait_for_function(
                    f"() => document.querySelectorAll('article mjx-container').length >= "
                    f"{maths}", timeout=30_000)
            except Exception:
                failures.append(f"{relative}: MathJax typeset fewer than {maths} equations")
            # A display equation wider than the text column is cut off behind a scroll bar.
            wide = page.evaluate(
                "() => [...document.querySelectorAll('article mjx-container[display=\"true\"]')]"
                ".filter(e => e.scrollWidth > e.clientWidth + 1)"
                ".map(e => e.textContent.slice(0, 40))")
            if wide:
                failures.append(f"{relative}: equations wider than the column: {wide}")
            errors = page.locator("mjx-merror").count()
            if errors:
                failures.append(f"{relative}: {errors} equations failed to typeset")
        if relative == "index.html":
            page.screenshot(path=str(OUTPUT / "landing.png"), full_page=False)
            nav = page.locator("nav.bd-links a").all_inner_texts()
            hrefs = page.evaluate("() => [...document.querySelectorAll('nav.bd-links a')]"
                                  ".map(a => a.getAttribute('href'))")
            for name in LECTURES:
                if not any(h and re.search(rf"lectures/{name}\.html", h) for h in hrefs):
                    failures.append(f"the navigation does not list {name} (it lists {nav})")
        if relative == f"lectures/{LECTURES[1]}.html":
            page.screenshot(path=str(OUTPUT / "lecture.png"), full_page=False)
    assert not failures, "\n".join(failures)
