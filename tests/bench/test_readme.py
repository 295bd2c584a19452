import pytest

from bench import readme
from bench.readme import ROOT, assemble, replace_block


def test_the_committed_readme_is_in_step_with_docs():
    assert readme.main(["--check"]) == 0, "README.md is stale: run `make readme`"


def test_replace_block_swaps_only_the_marked_part_and_is_idempotent():
    text = "top\n<!-- a -->\nold\n<!-- /a -->\nbottom\n"
    once = replace_block(text, "a", "new\n")
    assert once == "top\n<!-- a -->\nnew\n<!-- /a -->\nbottom\n"
    assert replace_block(once, "a", "new") == once


def test_a_missing_marker_is_named():
    with pytest.raises(ValueError, match="<!-- zoo -->"):
        replace_block("no markers", "zoo", "x")


def test_check_reports_a_stale_readme(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    for f in (ROOT / "docs").glob("*.md"):
        (docs / f.name).write_text(f.read_text())
    text = (ROOT / "README.md").read_text()
    (tmp_path / "README.md").write_text(text)
    assert readme.main(["--check", "--root", str(tmp_path)]) == 0
    (docs / "quantization.md").write_text((docs / "quantization.md").read_text() + "\nnew line\n")
    assert readme.main(["--check", "--root", str(tmp_path)]) == 1
    assert "make readme" in capsys.readouterr().err
    assert readme.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == assemble(text, docs)
    assert "new line" in (tmp_path / "README.md").read_text()
