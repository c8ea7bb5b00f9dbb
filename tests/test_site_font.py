"""The website carries the CJK glyphs its pages use (tools/subset_cjk_font.py, book/static/fonts/).

e2e/test_site.py checks in Chromium that the article's title is drawn from the subset; these
tests check, without a browser, that the committed subset covers every CJK character of the
site's sources, that its licence travels with it, and that book/static/course.css serves it for
exactly the code points the tool cuts.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COURSE_CSS = ROOT / "book" / "static" / "course.css"


def _load_tool():
    path = ROOT / "tools" / "subset_cjk_font.py"
    spec = importlib.util.spec_from_file_location("subset_cjk_font", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def test_the_subset_covers_every_cjk_character_of_the_site():
    used = tool.site_characters()
    assert "之" in used and "notebooks/00_index.ipynb" in used["之"]
    assert tool.missing() == {}, "rewrite the subset: python tools/subset_cjk_font.py"
    assert tool.main(["--check"]) == 0


def test_a_new_character_on_a_page_is_reported_with_its_page(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "new.md").write_text("苏剑林 writes 梯度", encoding="utf-8")
    notebook = {"cells": [{"cell_type": "markdown", "source": ["优化器\n"]}], "metadata": {}}
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_x.ipynb").write_text(json.dumps(notebook), encoding="ascii")
    assert tool.missing(tmp_path) == {"梯": ["docs/new.md"], "度": ["docs/new.md"]}
    assert set(tool.site_characters(tmp_path)) == set("苏剑林梯度优化器")


def test_the_subset_is_small_and_carries_its_licence():
    from fontTools.ttLib import TTFont

    assert tool.SUBSET.stat().st_size < 20_000, "the subset should hold a few glyphs only"
    with TTFont(str(tool.SUBSET)) as font:
        notice = font["name"].getDebugName(0)
        assert font["name"].getDebugName(1) == tool.FAMILY
    licence = tool.LICENCE.read_text(encoding="utf-8")
    assert notice and notice in licence
    assert "SIL OPEN FONT LICENSE Version 1.1" in licence


def _ranges(css: str) -> list[tuple[int, int]]:
    found = re.search(r"unicode-range:\s*([^;]+);", css)
    assert found, "course.css has no unicode-range for the CJK subset"
    pairs = [part.strip().removeprefix("U+").split("-") for part in found.group(1).split(",")]
    return [(int(low, 16), int(high, 16)) for low, high in pairs]


def _merged(ranges) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [tuple(pair) for pair in merged]


def test_the_stylesheet_serves_the_subset_for_the_code_points_it_was_cut_for():
    css = COURSE_CSS.read_text(encoding="utf-8")
    assert f'url("fonts/{tool.SUBSET.name}")' in css
    assert _merged(_ranges(css)) == _merged(tool.CJK_RANGES)
    family = re.search(r'@font-face\s*{\s*font-family:\s*"([^"]+)"', css).group(1)
    for stack in ("base", "heading", "monospace"):
        assert re.search(rf"--pst-font-family-{stack}:[^;]*\"{family}\";", css), stack
