"""Read the course website's pages in Chromium as a learner would, offline (e2e/test_site.py).

:func:`serving` serves a built site on 127.0.0.1; :func:`visit` opens one page in a fresh tab in
which every request that does not go to that server is refused and recorded, waits until
MathJax has typeset, and returns a :class:`PageVisit`: what the console said, which requests
failed or tried to leave the machine, which formulas were or were not typeset, which images
rendered, and where the links lead. :func:`dead_links` checks those links against the built
files, anchors included; :func:`fonts_drawing` asks Chromium which fonts drew a piece of text.
The functions only report; the tests decide.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, Response, Route

LOAD_TIMEOUT_MS = 30_000

# What a page shows, read after MathJax's first typesetting. Visible text is read outside code,
# scripts and typeset formulas; TeX delimiters left there mean a formula that was not typeset.
_READ_PAGE = r"""() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const skip = 'pre, code, script, style, mjx-container, .math, textarea, noscript';
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement.closest(skip)) texts.push(node.textContent);
  }
  const text = texts.join(' ');
  const raw = [];
  for (const pattern of [/\\\(.{0,40}/g, /\\\[.{0,40}/g, /\$\$.{0,40}/g,
                         /(?<![\\$\w])\$(?!\$)[^\s$][^$\n]{0,60}?\$(?!\$)/g]) {
    for (const match of text.matchAll(pattern)) raw.push(match[0].trim());
  }
  const maths = [...article.querySelectorAll('.math')];
  const rendered = img => img.complete && img.naturalWidth > 0;
  const href = selector => {
    const a = document.querySelector(selector);
    return a ? a.href : null;
  };
  return {
    title: document.title,
    heading: (article.querySelector('h1') || {}).textContent || '',
    math_count: maths.length,
    untypeset_math: maths.filter(m => !m.querySelector('mjx-container'))
      .map(m => m.textContent.trim().slice(0, 80)),
    math_errors: [...article.querySelectorAll('mjx-merror')]
      .map(e => e.getAttribute('data-mjx-error') || e.textContent),
    raw_tex: raw,
    output_images: [...article.querySelectorAll('.cell_output img')].filter(rendered).length,
    broken_images: [...document.querySelectorAll('img')].filter(i => !rendered(i))
      .map(i => i.getAttribute('src')),
    article_images: [...article.querySelectorAll('img')].filter(rendered).length,
    failed_fonts: [...document.fonts].filter(f => f.status === 'error').map(f => f.family),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    previous: href('.prev-next-area a.left-prev'),
    next: href('.prev-next-area a.right-next'),
    sidebar: [...document.querySelectorAll('nav.bd-docs-nav a.reference.internal')]
      .map(a => a.href),
    notebook_links: [...article.querySelectorAll('p.notebook-links a')].map(a => a.href),
  };
}"""


@dataclass
class PageVisit:
    """One page as Chromium showed it. URLs are absolute."""

    url: str  # where the tab ended (after redirects)
    status: int | None
    title: str
    heading: str
    console_errors: list[str]
    outside_requests: list[str]  # refused: they would have left this machine
    failed_requests: list[str]  # to the local server, answered >= 400 or not at all
    math_count: int
    untypeset_math: list[str]
    math_errors: list[str]
    raw_tex: list[str]
    output_images: int  # rendered images among the notebook's cell outputs
    article_images: int  # rendered images in the page's main text, outputs included
    broken_images: list[str]
    failed_fonts: list[str]
    links: list[str]
    previous: str | None
    next: str | None
    sidebar: list[str]
    notebook_links: list[str]
    phone_overflow_px: int = 0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
        pass


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free 127.0.0.1 port until the block ends; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _is_local(url: str, origin: str) -> bool:
    return url == origin or url.startswith(f"{origin}/") or url.startswith(("data:", "blob:"))


def visit(
    context: BrowserContext, url: str, origin: str, screenshot: Path | None = None
) -> PageVisit:
    """Open ``url`` in a new tab of ``context``; requests outside ``origin`` are refused."""
    page = context.new_page()
    console: list[str] = []
    outside: list[str] = []
    failed: list[str] = []

    def only_local(route: Route) -> None:
        if _is_local(route.request.url, origin):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def record_failure(request: Request) -> None:
        if _is_local(request.url, origin):
            failed.append(f"{request.url} ({request.failure})")

    def record_status(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"{response.url} ({response.status})")

    def record_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.append(message.text)

    page.route("**/*", only_local)
    page.on("console", record_console)
    page.on("pageerror", lambda error: console.append(f"uncaught: {error}"))
    page.on("requestfailed", record_failure)
    page.on("response", record_status)
    try:
        response = page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
        _follow_meta_refresh(page, response)
        page.evaluate(
            "async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }"
        )
        shown = page.evaluate(_READ_PAGE)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        shown["phone_overflow_px"] = _overflow_on_a_phone(page)
        final_url = page.url
    finally:
        page.close()
    return PageVisit(
        url=final_url,
        status=response.status if response else None,
        console_errors=console,
        outside_requests=outside,
        failed_requests=failed,
        **shown,
    )


_META_REFRESH = re.compile(
    r"""<meta[^>]+http-equiv=["']refresh["'][^>]+content=["'][^"']*url=([^"'\s]+)""", re.I
)


PHONE = {"width": 390, "height": 844}


def _overflow_on_a_phone(page: Page) -> int:
    """How many pixels the page is wider than a phone's screen (wide content should scroll
    inside its own box, as code cells do, not drag the whole page sideways)."""
    page.set_viewport_size(PHONE)
    return page.evaluate(
        """() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() =>
          done(document.documentElement.scrollWidth - document.documentElement.clientWidth))))"""
    )


def _follow_meta_refresh(page: Page, response: Response | None) -> None:
    """A page that only says "go elsewhere" (Jupyter Book's root index.html): wait for the move.

    The page is read again from the local server: the browser drops the body of a response it
    has navigated away from.
    """
    if response is None:
        return
    with urllib.request.urlopen(response.url, timeout=10) as again:
        found = _META_REFRESH.search(again.read().decode("utf-8", errors="replace"))
    if found:
        page.wait_for_url(urljoin(response.url, found.group(1)), timeout=LOAD_TIMEOUT_MS)
        page.wait_for_load_state("load")


def page_file(url: str, origin: str, folder: Path) -> Path | None:
    """The file under ``folder`` that a local URL serves, or None for a URL elsewhere."""
    if not _is_local(url, origin) or url.startswith(("data:", "blob:")):
        return None
    path = unquote(urlparse(url).path).lstrip("/")
    target = folder / path
    return target / "index.html" if path == "" or path.endswith("/") else target


def dead_links(visit: PageVisit, origin: str, folder: Path) -> list[str]:
    """Links of the page to local files that do not exist, or to anchors they lack."""
    dead = []
    for link in sorted(set(visit.links)):
        address, anchor = urldefrag(link)
        target = page_file(address, origin, folder)
        if target is None:
            continue
        if not target.is_file():
            dead.append(f"{link}: no file {target.relative_to(folder)}")
        elif anchor and target.suffix == ".html":
            html = target.read_text(encoding="utf-8", errors="replace")
            if f'id="{unquote(anchor)}"' not in html:
                dead.append(f"{link}: {target.relative_to(folder)} has no id {unquote(anchor)!r}")
    return dead


# A script, stylesheet, frame, image or font fetched from another host, named in HTML or CSS.
_EXTERNAL_ASSET = re.compile(
    r"""<(?:script|img|iframe|source|video|audio|embed)\b[^>]*\bsrc\s*=\s*["']?https?://[^"'\s>]+"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?https?://[^"'\s>]+"""
    r"""|https?://[^\s"'<>()]+\.(?:m?js|css|woff2?|ttf|otf)\b"""
    r"""|url\(\s*["']?https?://[^"')\s]+"""
    r"""|@import\s+["']https?://[^"'\s]+""",
    re.IGNORECASE,
)


def external_assets(folder: Path, skip: tuple[str, ...] = ("_static/mathjax",)) -> list[str]:
    """Every place where a page or stylesheet of the site names an asset on another host.

    The browser checks see what a page loads when it opens; this also finds what it would load
    later (a button's script, a font for another language). MathJax's own files are skipped:
    they mention its CDN in code paths that a local mathjax_path never takes.
    """
    found = []
    for path in sorted([*folder.rglob("*.html"), *folder.rglob("*.css")]):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith(skip):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{relative}: {match.group(0)}" for match in _EXTERNAL_ASSET.finditer(text)]
    return found


# A folded cell (the hide-output tag): myst-nb renders it as <details class="hide"> whose
# <summary> a reader clicks. Read each one's state, click it, read it again.
_READ_FOLDS = r"""() => [...document.querySelectorAll('article.bd-article details.hide')].map(d => {
  const body = d.querySelector('.cell_output');
  // checkVisibility: false inside a closed <details>, whose content Chromium keeps laid out
  // (content-visibility: hidden) but does not show.
  const seen = () => !!body && body.checkVisibility() && body.innerText.trim().length > 0;
  return {open: d.open, shown: seen(), text: body ? body.innerText.slice(0, 200) : ''};
})"""


def folded_cells(context: BrowserContext, url: str, origin: str) -> list[dict]:
    """Each folded cell of a page: ``before`` and ``after`` a click on its toggle.

    Each state is ``{open, shown, text}``: whether the ``<details>`` is open, whether its output
    takes up room on the page, and the start of the output's text.
    """
    page = context.new_page()
    page.route(
        "**/*",
        lambda route: route.continue_() if _is_local(route.request.url, origin) else route.abort(),
    )
    try:
        page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
        before = page.evaluate(_READ_FOLDS)
        for summary in page.locator("article.bd-article details.hide > summary").all():
            summary.click()
        after = page.evaluate(_READ_FOLDS)
    finally:
        page.close()
    return [{"before": b, "after": a} for b, a in zip(before, after, strict=True)]


# An animation (course_lib.plots.animate): its frame, and how many points its lines show.
_READ_PLAYERS = r"""() => [...document.querySelectorAll('article.bd-article .course-player')]
.map(p => ({
  frame: p.dataset.frame === undefined ? null : Number(p.dataset.frame),
  points: [...p.querySelectorAll('polyline')].map(l => l.points.length)
    .reduce((a, b) => a + b, 0),
}))"""


def play_animations(context: BrowserContext, url: str, origin: str, wait_ms: int = 1200) -> dict:
    """Press play on every animation of a page; read each one before and ``wait_ms`` after.

    Returns ``{"players": [{"before", "after"}...], "outside_requests": [...]}``: each state is
    the frame shown and how many line points are drawn; requests that tried to leave the machine
    are refused and listed.
    """
    page = context.new_page()
    outside: list[str] = []

    def only_local(route: Route) -> None:
        if _is_local(route.request.url, origin):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    try:
        page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
        before = page.evaluate(_READ_PLAYERS)
        for button in page.locator('article.bd-article .course-player [data-role="play"]').all():
            button.scroll_into_view_if_needed()
            button.click()
        page.wait_for_timeout(wait_ms)
        after = page.evaluate(_READ_PLAYERS)
    finally:
        page.close()
    players = [{"before": b, "after": a} for b, a in zip(before, after, strict=True)]
    return {"players": players, "outside_requests": outside}


def search_results(context: BrowserContext, origin: str, query: str) -> list[str]:
    """The pages that the site's own search (Sphinx's, in the browser) lists for ``query``."""
    page = context.new_page()
    page.route(
        "**/*",
        lambda route: route.continue_() if _is_local(route.request.url, origin) else route.abort(),
    )
    try:
        page.goto(f"{origin}/search.html?q={query}", wait_until="load", timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function(
            "() => { const s = document.querySelector('#search-results .search-summary');"
            " return s && /found|did not match/i.test(s.textContent); }",
            timeout=LOAD_TIMEOUT_MS,
        )
        return page.evaluate(
            "() => [...document.querySelectorAll('#search-results ul.search li a')]"
            ".map(a => a.href)"
        )
    finally:
        page.close()


# Wrap the first occurrence of a text in the article in a span of its own, so that the fonts
# Chromium used for exactly that text can be asked for.
_WRAP_TEXT = r"""text => {
  const article = document.querySelector('article.bd-article') || document.body;
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, at = node.textContent.indexOf(text);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + text.length);
    const span = document.createElement('span');
    span.setAttribute('data-font-probe', '');
    range.surroundContents(span);
    return true;
  }
  return false;
}"""


def fonts_drawing(
    context: BrowserContext, url: str, origin: str, text: str, block: str | None = None
) -> list[dict] | None:
    """The fonts Chromium drew ``text`` with, on the page at ``url`` (its first occurrence).

    Each font is ``{"familyName", "isCustomFont", "glyphCount"}`` as Chromium's DevTools
    protocol reports them (``CSS.getPlatformFontsForNode``): a character that no font has is
    drawn as an empty box by the last fallback font, so counting the glyphs of a web font tells
    real glyphs from boxes. ``block`` (a URL pattern) refuses those requests, to see the page
    without them. ``None`` when the page does not show the text.
    """
    page = context.new_page()

    def route(route: Route) -> None:
        local = _is_local(route.request.url, origin)
        blocked = block is not None and re.search(block, route.request.url)
        route.continue_() if local and not blocked else route.abort()

    page.route("**/*", route)
    try:
        page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
        if not page.evaluate(_WRAP_TEXT, text):
            return None
        page.evaluate("async () => { await document.fonts.ready; }")
        devtools = context.new_cdp_session(page)
        devtools.send("DOM.enable")
        devtools.send("CSS.enable")
        root = devtools.send("DOM.getDocument")["root"]["nodeId"]
        found = devtools.send(
            "DOM.querySelector", {"nodeId": root, "selector": "[data-font-probe]"}
        )
        fonts = devtools.send("CSS.getPlatformFontsForNode", {"nodeId": found["nodeId"]})["fonts"]
        devtools.detach()
        return fonts
    finally:
        page.close()
