"""The few Chinese glyphs the course website needs, as a font subset it serves itself.

The course cites Su Jianlin's "Keras之小众需求:自定义优化器". A machine without a CJK font (Debian's
Chromium as in the browser tests, many Linux desktops) draws those characters as empty boxes, so
the site carries a subset of Noto Sans CJK SC (SIL Open Font License 1.1) with exactly the CJK
characters that the site's sources use: book/static/fonts/, next to the licence, and named by
book/static/course.css as the last font of every font stack, for those characters only
(``unicode-range``). The subset is a few kilobytes and is committed, so building the site needs
neither this script nor the full font.

    python tools/subset_cjk_font.py           # rewrite the subset from the full font
    python tools/subset_cjk_font.py --check   # does the subset cover every CJK character?

Rewriting needs the full font and its licence, from Debian's ``fonts-noto-cjk`` package
(``--source`` and ``--copyright`` name them elsewhere: ``apt-get download fonts-noto-cjk`` and
``dpkg-deb -x`` unpack them without installing the package). ``--check`` needs only fontTools
(a dependency of matplotlib); tests/test_site_font.py runs it, so a page that starts using a new
CJK character fails the tests until the subset is rewritten.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FONTS = ROOT / "book" / "static" / "fonts"
SUBSET = FONTS / "noto-sans-sc-course-subset.woff"
LICENCE = FONTS / "OFL.txt"
DEFAULT_SOURCE = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
DEFAULT_COPYRIGHT = Path("/usr/share/doc/fonts-noto-cjk/copyright")
FAMILY = "Noto Sans CJK SC"  # the face of the collection that the subset is cut from

#: What the site shows: the lessons (text and outputs), the docs pages, and the docstrings that
#: the API reference renders.
SOURCES = ("notebooks/*.ipynb", "docs/*.md", "course_lib/**/*.py")

#: Unicode blocks drawn from the subset (course.css's ``unicode-range`` says the same).
CJK_RANGES = (
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK unified ideographs, extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # halfwidth and fullwidth forms
)

#: Name records kept in the subset: family and style (1-6) and the licence (13, 14) besides the
#: copyright notice (0).
NAME_IDS = (0, 1, 2, 3, 4, 5, 6, 13, 14)


_CJK = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in CJK_RANGES) + "]")


def _strings(value: object) -> Iterator[str]:
    """Every string inside a notebook's JSON (cells, outputs, metadata)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _text(path: Path) -> Iterable[str]:
    text = path.read_text(encoding="utf-8")
    return _strings(json.loads(text)) if path.suffix == ".ipynb" else [text]


def site_characters(root: Path = ROOT) -> dict[str, list[str]]:
    """Each CJK character the site's sources use -> the files that use it."""
    found: dict[str, list[str]] = {}
    for pattern in SOURCES:
        for path in sorted(root.glob(pattern)):
            used = {c for text in _text(path) for c in _CJK.findall(text)}
            for character in used:
                found.setdefault(character, []).append(path.relative_to(root).as_posix())
    return dict(sorted(found.items()))


def covered(font_path: Path = SUBSET) -> set[str]:
    """The characters that a font file maps to glyphs."""
    from fontTools.ttLib import TTFont

    with TTFont(str(font_path)) as font:
        return {chr(code) for code in font.getBestCmap()}


def missing(root: Path = ROOT, font_path: Path = SUBSET) -> dict[str, list[str]]:
    """CJK characters of the site that the subset lacks -> where they are used."""
    have = covered(font_path)
    return {c: files for c, files in site_characters(root).items() if c not in have}


def _face(source: Path):
    """The Simplified Chinese face of the collection (or the font itself)."""
    from fontTools.ttLib import TTCollection, TTFont

    if source.suffix.lower() != ".ttc":
        return TTFont(str(source), recalcTimestamp=False)
    for font in TTCollection(str(source), recalcTimestamp=False).fonts:
        if font["name"].getDebugName(1) == FAMILY:
            return font
    raise SystemExit(f"{source} has no face named {FAMILY!r}")


def licence_text(face, copyright_file: Path) -> str:
    """The subset's licence file: what it is, the font's copyright notice and licence record,
    and the full SIL Open Font License 1.1 from the Debian package's copyright file."""
    names = face["name"]
    lines = copyright_file.read_text(encoding="utf-8").splitlines()
    start = (
        1
        + next(  # the stand-alone licence paragraph, not a "Files:" stanza's field
            i
            for i, line in enumerate(lines[:-1])
            if line == "License: SIL-1.1" and lines[i + 1][:1] == " "
        )
    )
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(" ")), len(lines))
    ofl = "\n".join("" if line == " ." else line[1:] for line in lines[start:end])
    return (
        f"{SUBSET.name} is a subset of {FAMILY}\n({names.getDebugName(5)}),\n"
        "from Debian's fonts-noto-cjk package: the CJK characters that the course website uses,\n"
        "cut out by tools/subset_cjk_font.py; the glyphs themselves are unchanged.\n\n"
        f"{names.getDebugName(0)}\n{names.getDebugName(13)}\n\n{ofl}\n"
    )


def write_subset(source: Path, characters: Iterable[str], copyright_file: Path) -> None:
    """Cut ``characters`` out of ``source`` into :data:`SUBSET` (WOFF), the licence beside it."""
    from fontTools import subset

    face = _face(source)
    options = subset.Options()
    options.flavor = "woff"  # zlib-compressed; WOFF2 would need the brotli package
    options.name_IDs = list(NAME_IDS)
    options.hinting = False
    options.desubroutinize = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(characters))
    subsetter.subset(face)
    FONTS.mkdir(parents=True, exist_ok=True)
    face.flavor = "woff"
    face.save(str(SUBSET))
    LICENCE.write_text(licence_text(face, copyright_file), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the committed subset")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the full font")
    parser.add_argument(
        "--copyright",
        type=Path,
        default=DEFAULT_COPYRIGHT,
        help="the font package's copyright file, which holds the licence's full text",
    )
    arguments = parser.parse_args(argv)
    characters = site_characters()
    if arguments.check:
        lacking = missing()
        for character, files in lacking.items():
            print(f"missing {character} (U+{ord(character):04X}), used in {', '.join(files)}")
        if lacking:
            print("rewrite the subset: python tools/subset_cjk_font.py", file=sys.stderr)
        return 1 if lacking else 0
    for path, option in ((arguments.source, "--source"), (arguments.copyright, "--copyright")):
        if not path.exists():
            raise SystemExit(
                f"{path} is missing: install Debian's fonts-noto-cjk, or pass {option}"
            )
    write_subset(arguments.source, characters, arguments.copyright)
    size = SUBSET.stat().st_size
    print(f"{SUBSET.relative_to(ROOT)}: {len(characters)} characters, {size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
