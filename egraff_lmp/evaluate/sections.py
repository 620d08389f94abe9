"""A report as sections of blocks, written once and rendered to Markdown and to HTML.

A :class:`Section` is a heading and blocks: :class:`Paragraph`, :class:`Notes` (short lines
about what was evaluated: a Markdown list, paragraphs in HTML), :class:`Bullets` (a list in
both), :class:`Table` (cells ranked 1, best, in bold; 2 in italics) and :class:`Figures`
(PNG files: linked from Markdown, inlined in the self-contained HTML). Text may hold
:class:`Strong` runs (bold in Markdown; the HTML page lists such lines as plain paragraphs).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Strong:
    text: str


Text = str | Strong


def _md_text(runs) -> str:
    if isinstance(runs, (str, Strong)):
        runs = [runs]
    return "".join(f"**{r.text}**" if isinstance(r, Strong) else r for r in runs)


def _plain_text(runs) -> str:
    if isinstance(runs, (str, Strong)):
        runs = [runs]
    return "".join(r.text if isinstance(r, Strong) else r for r in runs)


@dataclass
class Paragraph:
    text: str


@dataclass
class Notes:
    items: list  # of Text or lists of Text


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Cell:
    text: str
    rank: int = 0  # 1: best of its row, 2: second, 0: neither


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]


@dataclass
class Figures:
    """PNG files under ``root`` (linked relative to it, or inlined)."""

    paths: list[Path]
    root: Path


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2


# -- Markdown ----------------------------------------------------------------------------
def _md_cell(c: Cell) -> str:
    return f"**{c.text}**" if c.rank == 1 else f"*{c.text}*" if c.rank == 2 else c.text


def _md_block(b) -> str:
    if isinstance(b, Paragraph):
        return b.text
    if isinstance(b, (Notes, Bullets)):
        return "\n".join(f"- {_md_text(x)}" for x in b.items)
    if isinstance(b, Table):
        out = ["| | " + " | ".join(b.columns) + " |", "|---" * (len(b.columns) + 1) + "|"]
        out += [f"| {label} | " + " | ".join(_md_cell(c) for c in cells) + " |"
                for label, cells in b.rows]
        return "\n".join(out)
    if isinstance(b, Figures):
        return "\n".join(f"![{p.stem}]({p.relative_to(b.root).as_posix()})" for p in b.paths)
    raise TypeError(f"not a report block: {b!r}")


def markdown(sections: list[Section]) -> str:
    """The report as Markdown: each section a heading, its blocks a blank line apart."""
    parts = []
    for s in sections:
        parts.append("#" * s.level + " " + s.title)
        parts += [text for text in map(_md_block, s.blocks) if text]
    return "\n\n".join(parts) + "\n"


# -- HTML --------------------------------------------------------------------------------
def _html_cell(c: Cell) -> str:
    t = html.escape(c.text)
    return (f"<td><b>{t}</b></td>" if c.rank == 1 else f"<td><i>{t}</i></td>" if c.rank == 2
            else f"<td>{t}</td>")


def _html_block(b) -> str:
    if isinstance(b, Paragraph):
        return f"<p>{html.escape(b.text)}</p>"
    if isinstance(b, Notes):
        return "".join(f"<p>{html.escape(_plain_text(x))}</p>" for x in b.items)
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b.items) + "</ul>"
    if isinstance(b, Table):
        head = "".join(f"<th>{html.escape(m)}</th>" for m in b.columns)
        body = "".join(f"<tr><th>{html.escape(label)}</th>{''.join(map(_html_cell, cells))}"
                       "</tr>" for label, cells in b.rows)
        return f"<table><tr><th></th>{head}</tr>{body}</table>"
    if isinstance(b, Figures):
        out = []
        for p in b.paths:
            data = base64.b64encode(p.read_bytes()).decode()
            out.append(f'<figure><img alt="{html.escape(p.stem)}" '
                       f'src="data:image/png;base64,{data}"><figcaption>'
                       f"{html.escape(p.stem)}</figcaption></figure>")
        return "".join(out)
    raise TypeError(f"not a report block: {b!r}")


STYLE = ("body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:"
         "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:"
         "right}th{text-align:left}img{max-width:100%}")


def html_page(sections: list[Section], title: str) -> str:
    """The report as one self-contained HTML page (figures inlined)."""
    body = "".join(f"<h{s.level}>{html.escape(s.title)}</h{s.level}>"
                   + "".join(map(_html_block, s.blocks)) for s in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title><style>{STYLE}</style></head><body>{body}"
            "</body></html>\n")
