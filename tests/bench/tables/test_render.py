"""Markdown and booktabs rendering: escaping, alignment, footnote markers."""

from bench.tables.render import Cell, Rendered, fmt_value, tex_escape, to_latex, to_markdown


def _table() -> Rendered:
    t = Rendered("t-1", "A_title", "Budget `smoke`, 50% of 10^6 & more.", ["Model", "IoU"],
                 [False, True], [])
    n = t.note("run x failed: ValueError: bad_thing")
    assert t.note("run x failed: ValueError: bad_thing") == n == 1  # same text, same number
    t.rows = [[Cell("a", "ENet"), Cell(0.5, fmt_value("pct", 0.5))],
              [Cell("b", "✓"), Cell(None, "failed", n)]]
    return t


def test_latex_escapes_and_marks_footnotes():
    tex = to_latex(_table())
    assert r"\caption{[t-1] A\_title. Budget \texttt{smoke}, 50\% of 10\textasciicircum{}6 \& " \
           r"more.}" in tex
    assert r"\begin{tabular}{lr}" in tex
    assert r"ENet & 50.0 \\" in tex and r"\checkmark{} & failed\textsuperscript{1} \\" in tex
    assert r"\textsuperscript{1}run x failed: ValueError: bad\_thing\par" in tex
    assert tex_escape("a<b>c~") == r"a\textless{}b\textgreater{}c\textasciitilde{}"


def test_markdown_aligns_numbers_right_and_lists_notes():
    md = to_markdown(_table())
    assert md.startswith("# [t-1] A_title\n\nBudget `smoke`")
    assert "|:--------|-----------:|" in md  # labels left, numbers right
    assert "| failed [1] |" in md
    assert "[1] run x failed: ValueError: bad_thing" in md


def test_formats():
    assert fmt_value("M", 39_758_761) == "39.76"
    assert fmt_value("G", 14_890_303_488) == "14.89"
    assert fmt_value("check", True) == "✓" and fmt_value("check", False) == ""
    assert fmt_value("yesno", False) == "no"
