"""Results quoted in README.md and docs/*.md, generated from the committed reference.

A figure copied into prose by hand drifts the moment the reference grows or a record is
re-run. A marked block instead names the reference and the rows it quotes, and
`python -m bench excerpts --update` (`make docs-results`) rewrites what lies between its
markers from that reference's run records, through the leaderboard's own row builder and
table renderers, so a quoted row reads exactly as in the reference's leaderboard.md.
`--check` (and `verify --reference`) fails on a block that no longer matches its records.

    <!-- excerpt: synthetic-quick models=unet_small methods=none,ptq -->
    (generated)
    <!-- /excerpt -->

docs/leaderboard.md ("Excerpts in the docs") is the syntax's user documentation.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_text
from bench.layout import REFERENCE_ROOT, reference_dirs
from bench.options import UsageError

OPEN = re.compile(r"^<!-- excerpt:(.*)-->\s*$")
CLOSE = re.compile(r"^<!-- /excerpt -->\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
LIST_KEYS = ("models", "methods", "families")
KEYS = (*LIST_KEYS, "table", "expect", "only")
TABLES = ("main", "deployment", "distillation")
DOC_FILES = ("README.md", "results/README.md", "docs/*.md")
FIX = "run `make docs-results` (python -m bench excerpts --update)"


class ExcerptError(UsageError):
    """A marker that cannot be read: one line naming the file, the line and the problem."""


@dataclass(frozen=True)
class Selection:
    """What one block quotes: which reference, which rows, which of its tables."""

    reference: str
    models: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    table: str = "main"
    expect: str = ""
    only: str = ""  # a METHOD spec: quote only the rows of its configurations

    def describe(self) -> str:
        parts = [self.reference] + [f"{k}={','.join(getattr(self, k))}" for k in LIST_KEYS
                                    if getattr(self, k)]
        if self.table != "main":
            parts.append(f"table={self.table}")
        if self.expect:
            parts.append(f"expect={self.expect}")
        if self.only:
            parts.append(f"only={self.only}")
        return " ".join(parts)


@dataclass(frozen=True)
class Block:
    path: Path
    open_line: int  # 0-based index of the opening marker
    close_line: int  # 0-based index of the closing marker
    selection: Selection

    def where(self) -> str:
        return f"{self.path}:{self.open_line + 1}"


def default_files(base: Path = Path(".")) -> list[Path]:
    """The markdown files that may quote the reference (those present under `base`)."""
    out: list[Path] = []
    for pattern in DOC_FILES:
        out += sorted(p for p in base.glob(pattern) if p.is_file())
    return out


def parse_marker(text: str, where: str, root: Path = REFERENCE_ROOT) -> Selection:
    """The selection an opening marker's text (after `excerpt:`) names; a bad one raises
    ExcerptError naming the problem and the valid choices."""
    words = text.split()
    if not words or "=" in words[0]:
        raise ExcerptError(f"{where}: excerpt marker names no reference; valid: "
                           f"{', '.join(_references(root)) or '(none committed)'}")
    ref, fields = words[0], {}
    if ref not in _references(root):
        raise ExcerptError(f"{where}: unknown reference {ref!r}; valid: "
                           f"{', '.join(_references(root)) or '(none committed)'}")
    for w in words[1:]:
        key, sep, value = w.partition("=")
        if not sep or not value:
            raise ExcerptError(f"{where}: {w!r} is not key=value; keys: {', '.join(KEYS)}")
        if key not in KEYS:
            raise ExcerptError(f"{where}: unknown key {key!r}; keys: {', '.join(KEYS)}")
        if key in fields:
            raise ExcerptError(f"{where}: key {key!r} given twice")
        fields[key] = value
    lists = {k: tuple(v for v in fields.get(k, "").split(",") if v) for k in LIST_KEYS}
    table = fields.get("table", "main")
    if table not in TABLES:
        raise ExcerptError(f"{where}: unknown table {table!r}; valid: {', '.join(TABLES)}")
    sel = Selection(ref, table=table, expect=fields.get("expect", ""),
                    only=fields.get("only", ""), **lists)
    _check_names(sel, where)
    return sel


def _check_names(sel: Selection, where: str) -> None:
    """Model, method and family names must exist (a typo would select nothing, silently)."""
    from bench.method import METHODS, PIPELINES, expand_methods, families
    from bench.registry import UnknownNameError
    from models import MODELS

    def unknown(kind: str, name: str, valid: list[str]) -> ExcerptError:
        return ExcerptError(f"{where}: unknown {kind} {name!r}; valid: {', '.join(valid)}")

    for m in sel.models:
        if m not in MODELS:
            raise unknown("model", m, MODELS.names())
    for spec in sel.methods:
        if spec not in PIPELINES and not all(n in METHODS for n in spec.split("+")):
            raise unknown("method", spec, sorted({*METHODS.names(), *PIPELINES.names()})
                          + ["a+b pipelines of them"])
    fams = families()
    for f in sel.families:
        if f not in fams:
            raise unknown("family", f, sorted(fams))
    for key in ("expect", "only"):
        if getattr(sel, key):
            try:
                expand_methods(getattr(sel, key))
            except (UnknownNameError, ValueError) as e:
                raise ExcerptError(f"{where}: {key}={getattr(sel, key)}: {e}") from None


def _references(root: Path) -> list[str]:
    return [p.name for p in reference_dirs(root)]


def find_blocks(path: Path, lines: list[str], root: Path = REFERENCE_ROOT) -> list[Block]:
    """Every marked block of a file, markers at the start of a line and outside fenced
    code (so documentation can show the syntax); a block left open, nested or closed
    without an opening raises ExcerptError."""
    blocks, opened, fenced = [], None, False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        m = OPEN.match(line)
        if m:
            if opened is not None:
                raise ExcerptError(f"{path}:{i + 1}: excerpt opened inside the one opened at "
                                   f"line {opened[0] + 1}; close that with <!-- /excerpt -->")
            opened = (i, parse_marker(m.group(1), f"{path}:{i + 1}", root))
        elif CLOSE.match(line):
            if opened is None:
                raise ExcerptError(f"{path}:{i + 1}: <!-- /excerpt --> closes no excerpt")
            blocks.append(Block(path, opened[0], i, opened[1]))
            opened = None
    if opened is not None:
        raise ExcerptError(f"{path}:{opened[0] + 1}: excerpt never closed; end it with a "
                           f"line <!-- /excerpt -->")
    return blocks


class References:
    """The rows and records of each reference, read once however many blocks quote it."""

    def __init__(self, root: Path = REFERENCE_ROOT):
        self.root = Path(root)
        self._cache: dict[str, tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]] = {}

    def get(self, name: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """(leaderboard rows, ok and failed records by run id) of reference `name`."""
        if name not in self._cache:
            from bench.leaderboard import build_rows
            from bench.records import iter_records

            ref = self.root / name
            rows, _ = build_rows(ref)
            self._cache[name] = rows, {r["run_id"]: r for r in iter_records(ref)}
        return self._cache[name]


def select_rows(rows: list[dict[str, Any]], sel: Selection,
                records: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The rows a selection names, in the leaderboard's order. Methods match a row's
    method cell (a preset's name or the `a+b` spec); families match when any stage, or the
    preset itself, belongs to one; `only` keeps the rows of its configurations (read from
    the rows' `records`), so a block quoting a fixed grid does not grow with the reference."""
    allowed = set(_configurations(sel.only)) if sel.only else None

    def wanted(r: dict[str, Any]) -> bool:
        if sel.models and r["model"] not in sel.models:
            return False
        if allowed is not None and _configuration(records or {}, r) not in allowed:
            return False
        if not (sel.methods or sel.families):
            return True
        return r["method"] in sel.methods or bool(_row_families(r["method"])
                                                   & set(sel.families))

    return [r for r in rows if wanted(r)]


def _configurations(spec: str) -> list[tuple[str, str]]:
    """(label, stages label) of every configuration a METHOD spec expands to, in order."""
    from bench.leaderboard import stages_label
    from bench.method import expand_methods

    return [(v.label, stages_label(v.resolved())) for v in expand_methods(spec)]


def _configuration(records: dict[str, dict[str, Any]], row: dict[str, Any]
                   ) -> tuple[str, str] | None:
    """(label, stages label) of a leaderboard row, from its first run record."""
    from bench.leaderboard import stages_label

    rec = records.get(row["run_ids"].split()[0]) if row.get("run_ids") else None
    if rec is None:
        return None
    return rec.get("label", rec["method"]), stages_label(rec["config"].get("stages", []))


def _row_families(label: str) -> set[str]:
    from bench.method import METHODS, PIPELINES, families

    spec = PIPELINES.get(label)[0] if label in PIPELINES else label
    out = {f for f, members in families().items() if label in members}
    for n in spec.split("+"):
        if n in METHODS:
            out.add(METHODS.get(n).family or n)
    return out


def render(sel: Selection, refs: References, doc: Path) -> list[str]:
    """The lines between a block's markers: the table, or a one-line note when the
    reference has no such rows yet, then one line naming the reference and its records."""
    from bench.leaderboard import (
        budget_line,
        distillation_table,
        main_table,
        render_deployment,
    )

    rows, records = refs.get(sel.reference)
    chosen = select_rows(rows, sel, records)
    if sel.table == "deployment":
        chosen = [r for r in chosen if r.get("deploy")]
        body = [x for x in render_deployment(chosen) if not x.startswith("#")]
        body = _strip_blank_edges(body)
    elif sel.table == "distillation":
        chosen = [r for r in chosen if r.get("teacher")]
        body = [distillation_table(chosen)] if chosen else []
    else:
        body = [main_table(chosen)] if chosen else []
    ref = refs.root / sel.reference
    if not chosen:
        body = [f"No rows yet in `{ref.as_posix()}` for `{sel.describe()}`."]
    used = {i for r in chosen for i in r["run_ids"].split()}
    link = Path(os.path.relpath(ref / "leaderboard.md", doc.parent)).as_posix()
    where = (f"dataset `{chosen[0]['dataset']}`, budget `{chosen[0]['budget']}`: "
             f"{budget_line(chosen)}; " if chosen else "")
    out = ["", *body, "",
           f"*Generated by `make docs-results` from [{ref.as_posix()}]({link}) ({where}"
           f"{_count(len(chosen), 'row')} from {_count(len(used), 'run record')}); "
           f"edit the marker above, not the table.*"]
    if sel.expect:
        out += ["", _missing_line(sel, rows, records)]
    return "\n".join([*out, ""]).split("\n")  # the tables are multi-line strings


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _strip_blank_edges(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _missing_line(sel: Selection, rows: list[dict[str, Any]],
                  records: dict[str, dict[str, Any]]) -> str:
    """Which configurations of `expect` (a METHOD spec, as `make bench` takes) have no row
    yet in the reference, per model: the gaps said by the records, not by hand."""
    have = {(r["model"], *c) for r in rows if (c := _configuration(records, r))}
    models = sel.models or tuple(sorted({r["model"] for r in rows}))
    variants = _configurations(sel.expect)
    gaps = []
    for m in models:
        missing = [" ".join(filter(None, v)) for v in variants if (m, *v) not in have]
        if missing:
            gaps.append(f"{m}: {', '.join(missing)}")
    if not gaps:
        return (f"Every configuration of `METHOD={sel.expect}` has a row here for "
                f"{', '.join(models) or 'no model'}.")
    return f"Not yet in this reference, of `METHOD={sel.expect}`: {'; '.join(gaps)}."


def regenerate(files: list[Path], root: Path = REFERENCE_ROOT
               ) -> tuple[dict[Path, str], list[Block], list[Block]]:
    """(new text of every file that changes, every block, the stale blocks). Every marker
    of every file is read before anything is written, so a bad one changes no file."""
    parsed = []
    for path in map(Path, files):
        lines = path.read_text(encoding="utf-8").split("\n")
        parsed.append((path, lines, find_blocks(path, lines, root)))
    refs = References(root)
    new_texts, blocks, stale = {}, [], []
    for path, lines, found in parsed:
        out, last = [], 0
        for b in found:
            want = render(b.selection, refs, path)
            if lines[b.open_line + 1:b.close_line] != want:
                stale.append(b)
            out += lines[last:b.open_line + 1] + want
            last = b.close_line
        out += lines[last:]
        blocks += found
        if out != lines:
            new_texts[path] = "\n".join(out)
    return new_texts, blocks, stale


def check(files: list[Path], root: Path = REFERENCE_ROOT) -> tuple[list[str], int]:
    """(one line per stale block, naming it and the command that fixes it; how many
    blocks there are)."""
    _, blocks, stale = regenerate(files, root)
    return [f"{b.where()}: excerpt `{b.selection.describe()}` differs from what its "
            f"records generate; {FIX}" for b in stale], len(blocks)


def update(files: list[Path], root: Path = REFERENCE_ROOT) -> list[Path]:
    """Rewrite every stale block (each file atomically); the files rewritten."""
    new_texts, _, _ = regenerate(files, root)
    for path, text in new_texts.items():
        atomic_write_text(path, text)
    return sorted(new_texts)


def main(files: list[str], do_update: bool, root: Path = REFERENCE_ROOT) -> int:
    """`python -m bench excerpts`: 0 when every block is current (or was rewritten), 1
    naming each stale block under --check; a bad marker raises ExcerptError (exit 2)."""
    paths = [Path(f) for f in files] or default_files()
    for p in paths:
        if not p.is_file():
            raise ExcerptError(f"{p}: no such markdown file")
    if do_update:
        written = update(paths, root)
        print(f"excerpts: rewrote {len(written)} file(s)"
              + (f": {', '.join(map(str, written))}" if written else "; all current"),
              file=sys.stderr)
        return 0
    problems, n = check(paths, root)
    for p in problems:
        print(f"STALE {p}", file=sys.stderr)
    print(f"excerpts: {n - len(problems)}/{n} blocks current in {len(paths)} file(s)",
          file=sys.stderr)
    return 1 if problems else 0
