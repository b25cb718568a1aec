"""docs/DESIGN.md: every citation of it in the code names the file's path and a section it has."""
import glob
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# "docs/DESIGN.md §4"; the section number may follow a line break inside a docstring.
_CITATION = re.compile(r"(\S*)DESIGN(\.md)?(\s*§\s*(\d+))?")


def _python_files() -> list:
    return [p for folder in ("tf_synchro", "tfrecords_tools", "tests", "benchmarks", "tools")
            for p in glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True)]


def test_design_citations_name_existing_sections():
    with open(os.path.join(REPO, "docs", "DESIGN.md")) as f:
        sections = set(re.findall(r"^## (\d+)\. ", f.read(), re.M))
    assert sections == {"1", "2", "3", "4", "5", "6"}
    citations = 0
    for path in _python_files():
        if os.path.abspath(path) == os.path.abspath(__file__):
            continue
        with open(path) as f:
            text = f.read()
        for m in _CITATION.finditer(text):
            where = f"{os.path.relpath(path, REPO)}: {m.group(0)!r}"
            assert m.group(1).endswith("docs/") and m.group(2), f"{where}: cite docs/DESIGN.md"
            assert m.group(4) in sections, f"{where}: no such section in docs/DESIGN.md"
            citations += 1
    assert citations >= 10  # The citations exist to be checked.
