"""The course website: built offline within a minute, then read page by page in Chromium.

The site is built once per session with book/build.py (what ``make site`` runs), with Python's
network blocked (e2e/offline_guard.py), into a temporary folder. Each page, the home page and
every lesson in the index's order, then every docs page a lesson links, is opened once in the
e2e suite's Chromium (e2e/site_pages.py) from a server on 127.0.0.1, and must:

* load with no console error, no failed request, and no request leaving the machine;
* show every figure that its notebook stores (its image outputs, counted);
* typeset every formula: no raw ``\\(``, ``\\[`` or ``$$`` left in the visible text;
* link only to files and anchors that exist, and chain previous/next in the lesson order;
* say which notebook it shows, linked in the repository, and open it on Binder with the
  README's URL pattern;
* fit a phone's screen (390 px) without scrolling sideways.

Besides: the home page is the index, the site reads from disk (file://) too, its search finds a
lesson, and no page names a script, stylesheet or font on another host. The last test runs the
checks on a page broken on purpose, so that each is seen to fail. Screenshots of every page go
to test-artifacts/e2e/site/, with the build's time in build.json and a summary.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from browser_pass import stored_images
from course_map import INDEX, ROOT, lessons_on_disk, linked_from_index
from offline_guard import prepare_guard
from site_pages import (
    PageVisit,
    dead_links,
    external_assets,
    folded_cells,
    fonts_drawing,
    play_animations,
    search_results,
    serving,
    visit,
)

BUILD_BUDGET_S = 60.0


def _load_book_contents():
    """book/contents.py, loaded by path (book/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("book_contents", ROOT / "book" / "contents.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


contents = _load_book_contents()


def _site_pages() -> list[str]:
    """The pages in reading order (book/contents.py), from the lessons that exist: a lesson the
    index links but nobody has written yet fails the build test, not the collection."""
    lessons = [f"notebooks/{name}" for name in lessons_on_disk()]
    return contents.reading_order(contents.site_parts(lessons))


SITE_PAGES = _site_pages()


def html_path(page: str) -> str:
    """Where Jupyter Book writes a source page: notebooks/01_x.ipynb -> notebooks/01_x.html."""
    return str(Path(page).with_suffix(".html").as_posix())


@dataclass
class BuiltSite:
    """What one run of book/build.py left: the site, its exit code, time, log, network tries."""

    html: Path
    returncode: int
    seconds: float  # wall clock, what the budget is about
    cpu_seconds: float  # the build's own processor time: tells contention from a slow build
    log: str
    network_attempts: list[str]


@pytest.fixture(scope="session")
def built_site(tmp_path_factory, artifacts) -> BuiltSite:
    """``python book/build.py`` into a temporary folder, timed, with the network blocked."""
    guard = prepare_guard(tmp_path_factory.mktemp("site-guard"))
    output = tmp_path_factory.mktemp("site")
    cpu_before = _children_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "book" / "build.py"), "--output", str(output)],
        cwd=ROOT,
        env={**os.environ, **guard.env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    built = BuiltSite(
        html=output / "_build" / "html",
        returncode=done.returncode,
        seconds=time.perf_counter() - started,
        cpu_seconds=_children_cpu_seconds() - cpu_before,
        log=done.stdout + done.stderr,
        network_attempts=guard.network_attempts(),
    )
    record = {"seconds": round(built.seconds, 1), "cpu_seconds": round(built.cpu_seconds, 1)}
    (artifacts / "site").mkdir(exist_ok=True)
    (artifacts / "site" / "build.json").write_text(json.dumps(record) + "\n", encoding="utf-8")
    return built


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="session")
def site(built_site):
    """The built site served on 127.0.0.1: ``(folder, origin)``."""
    if not (built_site.html / "index.html").exists():
        pytest.fail(f"book/build.py made no site; its output:\n{built_site.log[-4000:]}")
    with serving(built_site.html) as origin:
        yield built_site.html, origin


@pytest.fixture(scope="session")
def site_visits(browser, site, artifacts):
    """``site_visits(page)``: the :class:`PageVisit` of a source page, visited on first request."""
    folder, origin = site
    visits: dict[str, PageVisit] = {}

    def get(page: str) -> PageVisit:
        if page not in visits:
            shot = artifacts / "site" / f"{Path(page).stem}.png"
            visits[page] = visit(browser, f"{origin}/{html_path(page)}", origin, shot)
        return visits[page]

    yield get
    if visits:
        summary = {page: _summary(v) for page, v in visits.items()}
        (artifacts / "site" / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def _summary(visit: PageVisit) -> dict:
    return {
        "formulas": visit.math_count,
        "output images": visit.output_images,
        "links": len(set(visit.links)),
        "console errors": len(visit.console_errors),
        "outside requests": len(visit.outside_requests),
        "wider than a phone (px)": visit.phone_overflow_px,
    }


def _page_of(url: str | None, origin: str) -> str | None:
    """The source page (as in SITE_PAGES) that a local page URL shows."""
    if url is None:
        return None
    path = url.removeprefix(f"{origin}/").split("#")[0].split("?")[0]
    for page in SITE_PAGES:
        if html_path(page) == path:
            return page
    return path


def expected_figures(page: str) -> int:
    """Images a page must show: a notebook's image outputs and the still image of each of its
    animations (course_lib.plots.animate), a markdown file's images."""
    if page.endswith(".ipynb"):
        return sum(stored_images(Path(page).name)) + _stored_animations(page)
    return len(re.findall(r"!\[[^\]]*\]\(", (ROOT / page).read_text(encoding="utf-8")))


# ---- the build ---------------------------------------------------------------------------------


def test_the_site_builds_offline_within_a_minute(built_site):
    assert built_site.returncode == 0, f"book/build.py failed:\n{built_site.log[-4000:]}"
    assert not built_site.network_attempts, (
        f"the build tried to reach the network: {built_site.network_attempts}"
    )
    assert built_site.seconds < BUILD_BUDGET_S, (
        f"the build took {built_site.seconds:.0f} s ({built_site.cpu_seconds:.0f} s of CPU); "
        f"the budget is {BUILD_BUDGET_S:.0f} s"
    )


def test_the_site_has_a_page_for_every_lesson_the_index_links(built_site):
    pages = [f"notebooks/{name}" for name in linked_from_index()]
    missing = [page for page in pages if not (built_site.html / html_path(page)).exists()]
    assert not missing, f"no page for {missing}"
    assert (built_site.html / html_path(contents.INDEX)).exists()


def test_no_page_names_a_script_style_or_font_on_another_host(built_site):
    """Beyond what opening a page loads: nothing that a click or a language could load later."""
    assert (built_site.html / "index.html").exists(), built_site.log[-2000:]
    found = external_assets(built_site.html)
    assert not found, "assets from other hosts:\n" + "\n".join(found)


# ---- every page --------------------------------------------------------------------------------


def test_the_home_page_is_the_index_notebook(browser, site):
    folder, origin = site
    home = visit(browser, f"{origin}/", origin)
    assert home.url == f"{origin}/{html_path(INDEX.relative_to(ROOT).as_posix())}", home.url
    assert home.heading.startswith("00 · "), home.heading


def test_the_site_reads_from_disk_without_a_server(browser, site):
    """What `make site` tells a learner: open index.html from the disk (file://), no server.

    The home page and the page with the most figures must read as when served: formulas
    typeset, figures and fonts loaded, nothing fetched from elsewhere. The console is not
    checked here: on file:// pages Chromium refuses the theme's cross-origin font *preloads*
    (and says so in the console) while the fonts themselves load, which ``failed_fonts`` checks.
    """
    folder, _ = site
    origin = folder.as_uri()
    figures = max(SITE_PAGES, key=expected_figures)
    for page in dict.fromkeys([contents.INDEX, figures]):
        start = f"{origin}/index.html" if page == contents.INDEX else f"{origin}/{html_path(page)}"
        shown = visit(browser, start, origin)
        assert shown.url == f"{origin}/{html_path(page)}"
        problems = shown.outside_requests + shown.untypeset_math + shown.failed_fonts
        assert not problems, f"{page} from disk: {problems}"
        assert shown.math_count > 0 or page != contents.INDEX
        assert shown.output_images == expected_figures(page) and not shown.broken_images


@pytest.mark.parametrize("page", SITE_PAGES)
def test_page_loads_offline_without_errors(site_visits, page):
    shown = site_visits(page)
    assert shown.status == 200, f"{page}: HTTP {shown.status}"
    assert not shown.outside_requests, (
        f"{page}: requests leaving the machine: {shown.outside_requests}"
    )
    assert not shown.console_errors, f"{page}: console errors: {shown.console_errors}"
    assert not shown.failed_requests, f"{page}: failed requests: {shown.failed_requests}"
    assert not shown.failed_fonts, f"{page}: fonts that failed to load: {shown.failed_fonts}"


@pytest.mark.parametrize("page", SITE_PAGES)
def test_page_shows_every_figure(site_visits, page):
    shown = site_visits(page)
    wanted = expected_figures(page)
    assert not shown.broken_images, f"{page}: images that did not render: {shown.broken_images}"
    found = shown.output_images if page.endswith(".ipynb") else shown.article_images
    assert found == wanted, f"{page}: {found} images rendered, the source has {wanted}"


@pytest.mark.parametrize("page", SITE_PAGES)
def test_page_typesets_every_formula(site_visits, page):
    shown = site_visits(page)
    assert not shown.untypeset_math, (
        f"{page}: formulas MathJax left as text: {shown.untypeset_math}"
    )
    assert not shown.math_errors, f"{page}: formulas MathJax could not read: {shown.math_errors}"
    assert not shown.raw_tex, f"{page}: raw TeX in the visible text: {shown.raw_tex}"


@pytest.mark.parametrize("page", SITE_PAGES)
def test_page_links_lead_somewhere(site_visits, site, page):
    folder, origin = site
    dead = dead_links(site_visits(page), origin, folder)
    assert not dead, f"{page}: links to nothing:\n" + "\n".join(dead)


@pytest.mark.parametrize("page", SITE_PAGES)
def test_previous_and_next_follow_the_lesson_order(site_visits, site, page):
    folder, origin = site
    shown = site_visits(page)
    position = SITE_PAGES.index(page)
    expected = (
        SITE_PAGES[position - 1] if position > 0 else None,
        SITE_PAGES[position + 1] if position + 1 < len(SITE_PAGES) else None,
    )
    found = (_page_of(shown.previous, origin), _page_of(shown.next, origin))
    assert found == expected, f"{page}: previous/next lead to {found}, the order says {expected}"


def test_the_sidebar_lists_the_pages_in_reading_order(site_visits, site):
    folder, origin = site
    shown = site_visits(SITE_PAGES[1] if len(SITE_PAGES) > 1 else SITE_PAGES[0])
    listed = [_page_of(url, origin) for url in shown.sidebar]
    assert list(dict.fromkeys(listed)) == SITE_PAGES


_BADGE = re.compile(
    r"https://mybinder\.org/v2/gh/(?P<repository>[^/\s]+/[^/\s]+)/(?P<ref>[^?\s]+)"
    r"\?urlpath=lab/tree/notebooks/00_index\.ipynb"
)


@pytest.mark.parametrize("page", SITE_PAGES)
def test_page_fits_a_phone_screen(site_visits, page):
    overflow = site_visits(page).phone_overflow_px
    assert overflow <= 1, f"{page}: {overflow} px wider than a 390 px phone screen"


def test_the_search_finds_a_lesson_by_a_word_of_its_title(browser, site, site_visits):
    folder, origin = site
    lesson = [page for page in SITE_PAGES if page.endswith(".ipynb")][-1]
    title = site_visits(lesson).heading.split("·", 1)[-1]
    word = max(re.findall(r"[A-Za-z]{4,}", title), key=len)
    found = [_page_of(url, origin) for url in search_results(browser, origin, word)]
    assert lesson in found, f"searching {word!r} found {found}, not {lesson}"


# ---- the library's pages ------------------------------------------------------------------------

API_PAGE = "docs/api.md"


def _exported_names() -> dict[str, str]:
    """``course_lib``'s re-exported names -> the module that defines each (imports no Keras)."""
    import course_lib

    found = {}
    for name in course_lib.__all__:
        if name in course_lib._MODULES or name.startswith("__"):
            continue
        module = course_lib._EXPORTS.get(name)
        found[name] = f"course_lib.{module}" if module else vars(course_lib)[name].__module__
    return found


def test_the_reference_has_an_anchor_for_every_public_name_and_module(built_site):
    """``api.html#course_lib.SoftBatch`` and ``#course_lib.soft_batch.SoftBatch`` both lead to
    SoftBatch: the anchors that lessons and recipes link to, as their imports name it."""
    import course_lib

    html = (built_site.html / html_path(API_PAGE)).read_text(encoding="utf-8")
    anchors = set(re.findall(r'\bid="([^"]+)"', html))
    wanted = [f"course_lib.{name}" for name in _exported_names()]
    wanted += [f"{module}.{name}" for name, module in _exported_names().items()]
    wanted += [f"module-course_lib.{name}" for name in course_lib._MODULES if name != "keras2"]
    missing = [anchor for anchor in wanted if anchor not in anchors]
    assert not missing, f"{API_PAGE}: no anchor for {missing}"


_LESSON_LINKS = r"""names => Object.fromEntries(names.map(name => {
  const entry = document.getElementById(name);
  const body = entry && entry.nextElementSibling;
  const line = body && [...body.children].find(p => /^Lessons?:/.test(p.textContent.trim()));
  return [name, line ? [...line.querySelectorAll('a')].map(a => a.href) : []];
}))"""


def test_the_reference_links_every_public_name_to_a_lesson_that_builds_it(browser, site):
    folder, origin = site
    page = browser.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin)
               else route.abort())  # fmt: skip
    try:
        page.goto(f"{origin}/{html_path(API_PAGE)}", wait_until="load")
        links = page.evaluate(_LESSON_LINKS, [f"course_lib.{n}" for n in _exported_names()])
    finally:
        page.close()
    lessons = {f"{origin}/{html_path(p)}" for p in SITE_PAGES if p.startswith("notebooks/")}
    without = [name for name, hrefs in links.items() if not hrefs]
    assert not without, f"{API_PAGE}: no lesson linked for {without}"
    elsewhere = {name: h for name, h in links.items() if not set(h) <= lessons}
    assert not elsewhere, f"lesson links that lead to no lesson page: {elsewhere}"
    assert links["course_lib.SoftBatch"] == [f"{origin}/notebooks/03_soft_batch.html"]


def test_the_search_finds_a_name_of_the_library_in_the_reference(browser, site):
    folder, origin = site
    found = search_results(browser, origin, "SoftBatch")
    assert f"{origin}/{html_path(API_PAGE)}#course_lib.SoftBatch" in found, found


# ---- the article's title, in Chinese ------------------------------------------------------------

ARTICLE_TITLE = "Keras之小众需求:自定义优化器"
CJK_SUBSET = "_static/fonts/noto-sans-sc-course-subset.woff"


def _glyphs(fonts: list[dict], custom: bool) -> int:
    return sum(font["glyphCount"] for font in fonts if font["isCustomFont"] == custom)


def test_the_article_title_is_drawn_with_real_glyphs(browser, site):
    """The home page names Su Jianlin's article in Chinese. Debian's Chromium here has no CJK
    font: each of the title's Chinese characters must come from the subset the site serves
    (a web font), not from a system font's empty box; the rest from the theme's fonts."""
    folder, origin = site
    assert (folder / CJK_SUBSET).is_file()
    fonts = fonts_drawing(browser, f"{origin}/{html_path(contents.INDEX)}", origin, ARTICLE_TITLE)
    assert fonts is not None, f"the home page does not show {ARTICLE_TITLE!r}"
    chinese = sum(1 for character in ARTICLE_TITLE if ord(character) > 0x2FFF)
    assert _glyphs(fonts, custom=True) == chinese, fonts
    assert _glyphs(fonts, custom=False) == len(ARTICLE_TITLE) - chinese, fonts


def test_without_the_served_subset_the_title_check_sees_empty_boxes(browser, site):
    """The check above can fail: with the subset's request refused, no web font draws the title."""
    folder, origin = site
    url = f"{origin}/{html_path(contents.INDEX)}"
    fonts = fonts_drawing(browser, url, origin, ARTICLE_TITLE, block=r"\.woff2?$")
    assert fonts is not None and _glyphs(fonts, custom=True) == 0, fonts
    assert _glyphs(fonts, custom=False) == len(ARTICLE_TITLE), fonts


def _stored_solution_cells(page: str) -> int:
    notebook = nbformat.read(ROOT / page, as_version=4)
    return sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code" and cell.source.strip().endswith(".solution()")
    )


LESSONS_WITH_SOLUTIONS = [
    page for page in SITE_PAGES if page.endswith(".ipynb") and _stored_solution_cells(page)
]


def test_lessons_fold_the_solutions_of_what_the_learner_writes():
    """The parametrisation below needs pages to test: the learner writes in several lessons."""
    assert len(LESSONS_WITH_SOLUTIONS) >= 5, LESSONS_WITH_SOLUTIONS


@pytest.mark.parametrize("page", LESSONS_WITH_SOLUTIONS)
def test_a_solution_is_folded_and_opens_on_a_click(browser, site, page):
    """A lesson's solution is one step away on the website: a folded cell its toggle opens."""
    folder, origin = site
    folds = folded_cells(browser, f"{origin}/{html_path(page)}", origin)
    assert len(folds) == _stored_solution_cells(page), f"{page}: {len(folds)} folded cells"
    for fold in folds:
        assert not fold["before"]["open"] and not fold["before"]["shown"], (page, fold)
        assert fold["after"]["open"] and fold["after"]["shown"], (page, fold)
        assert fold["after"]["text"].startswith("Solution:"), (page, fold)


def _stored_animations(page: str) -> int:
    notebook = nbformat.read(ROOT / page, as_version=4)
    return sum(
        str(output.get("data", {}).get("text/html", "")).count('class="course-player"')
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


LESSONS_WITH_ANIMATIONS = [
    page for page in SITE_PAGES if page.endswith(".ipynb") and _stored_animations(page)
]


def test_five_lessons_carry_an_animation():
    assert len(LESSONS_WITH_ANIMATIONS) >= 5, LESSONS_WITH_ANIMATIONS


@pytest.mark.parametrize("page", LESSONS_WITH_ANIMATIONS)
def test_an_animation_plays_offline(browser, site, page):
    """Played on the website, with no kernel: each animation's frame moves on, nothing leaves."""
    folder, origin = site
    played = play_animations(browser, f"{origin}/{html_path(page)}", origin)
    assert not played["outside_requests"], f"{page}: {played['outside_requests']}"
    assert len(played["players"]) == _stored_animations(page), f"{page}: players on the page"
    for player in played["players"]:
        before, after = player["before"], player["after"]
        assert before["frame"] is not None, f"{page}: the player's script did not run"
        assert after["frame"] != before["frame"] and after["points"] != before["points"], player


@pytest.mark.parametrize("page", [p for p in SITE_PAGES if p.endswith(".ipynb")])
def test_page_names_its_notebook_and_opens_it_on_binder(site_visits, page):
    """The README's Binder badge gives the pattern: the same repository, ref and interface."""
    badge = _BADGE.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert badge, "README.md has no Binder badge that opens notebooks/00_index.ipynb"
    repository, ref = badge.group("repository"), badge.group("ref")
    expected = [
        f"https://github.com/{repository}/blob/{ref}/{page}",
        badge.group(0).replace("notebooks/00_index.ipynb", page),
    ]
    assert site_visits(page).notebook_links == expected


# ---- the checks can fail -----------------------------------------------------------------------

BROKEN_PAGE = r"""<!doctype html>
<html><head><title>Broken on purpose</title>
<script src="https://cdn.example.org/mathjax/tex-chtml.js"></script></head>
<body><article class="bd-article"><h1>Broken</h1>
<p>Raw \(x^2\) and $$y = 1$$ left as text.</p>
<p><span class="math notranslate nohighlight">\(z\)</span></p>
<div class="cell_output"><img src="missing.png" alt="a figure that is not there"></div>
<p><a href="nowhere.html">a dead page</a> and <a href="#no-such-anchor">a dead anchor</a></p>
<div style="width: 900px">a box wider than a phone</div>
<script>console.error("broken on purpose")</script>
</article></body></html>
"""


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    (tmp_path / "index.html").write_text(BROKEN_PAGE, encoding="utf-8")
    with serving(tmp_path) as origin:
        shown = visit(browser, f"{origin}/index.html", origin)
        dead = dead_links(shown, origin, tmp_path)
    assert shown.outside_requests == ["https://cdn.example.org/mathjax/tex-chtml.js"]
    assert "broken on purpose" in shown.console_errors
    assert [f for f in shown.failed_requests if "missing.png" in f]
    assert shown.untypeset_math == [r"\(z\)"]
    assert [raw[:3] for raw in shown.raw_tex] == [r"\(x", "$$y"]
    assert shown.broken_images == ["missing.png"] and shown.output_images == 0
    assert shown.phone_overflow_px > 400
    assert [link.split("/")[-1] for link in dead] == [
        "index.html#no-such-anchor: index.html has no id 'no-such-anchor'",
        "nowhere.html: no file nowhere.html",
    ]
    assert external_assets(tmp_path) == [
        'index.html: <script src="https://cdn.example.org/mathjax/tex-chtml.js'
    ]
