"""The report as a small document model, rendered to one self-contained HTML file and Markdown."""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath

# Everything scraped (URLs, labels, error messages) is untrusted text: HTML output escapes every
# string, and Markdown output escapes the characters that would change a table or inject markup.
# Paragraphs (Text, the intro) may use three marks of inline Markdown, rendered in both
# outputs: `code`, *emphasis* and **strong**; everything else in them is text.


@dataclass(frozen=True)
class Thumb:
    """A small image shown inside a table cell."""

    path: Path
    alt: str


Cell = str | int | float | Thumb | None


@dataclass(frozen=True)
class Text:
    """A paragraph, with inline `code`, *emphasis* and **strong** (see inline_tokens)."""

    text: str
    small: bool = False  # a legend or footnote


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section (e.g. one per model in Predictions)."""

    text: str


@dataclass(frozen=True)
class Facts:
    """Key numbers of a section, as (name, value) pairs."""

    items: list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


Block = Text | Heading | Facts | Table | Figure


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def facts(self) -> list[tuple[str, str]]:
        return [item for block in self.blocks if isinstance(block, Facts) for item in block.items]

    @property
    def figures(self) -> list[Path]:
        return [block.path for block in self.blocks if isinstance(block, Figure)]


def short(path: str, keep: int = 12) -> str:
    """`label/0123456789ab….jpg`: the parent folder is usually the class; content-hash
    file names are cut, the start is enough to tell images apart."""
    p = PurePath(path)
    stem = p.stem if len(p.stem) <= keep + 4 else p.stem[:keep] + "…"
    return f"{p.parent.name}/{stem}{p.suffix}" if p.parent.name else f"{stem}{p.suffix}"


_INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|(?<![\w*])\*\*(?P<strong>[^\s*](?:[^*]*[^\s*])?)\*\*(?![\w*])"
    r"|(?<![\w*])\*(?P<em>[^\s*](?:[^*]*[^\s*])?)\*(?![\w*])"
)


def inline_tokens(text: str) -> list[tuple[str, str]]:
    """A paragraph as (kind, text) runs, kind one of text, code, em, strong; whitespace runs
    collapse to one space (a paragraph is one line in Markdown)."""
    text = " ".join(str(text).split())
    tokens, at = [], 0
    for match in _INLINE.finditer(text):
        if match.start() > at:
            tokens.append(("text", text[at : match.start()]))
        kind = match.lastgroup or "text"
        tokens.append((kind, match.group(kind)))
        at = match.end()
    if at < len(text):
        tokens.append(("text", text[at:]))
    return tokens


def fmt(value: object, digits: int = 3) -> str:
    """Numbers as people read them: ints plainly, floats rounded, missing values as a dash."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d2330; background: #f6f7f9; }
main { max-width: 1000px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; overflow-wrap: anywhere; }
h3 { font-size: 1.1rem; margin: 1.2rem 0 0.3rem; overflow-wrap: anywhere; }
h2 { font-size: 1.3rem; margin: 2rem 0 0.5rem; padding-bottom: 4px;
  border-bottom: 2px solid #3b6fd4; }
nav a { margin-right: 12px; color: #3b6fd4; }
section { background: #fff; border-radius: 8px; padding: 4px 16px 16px; margin: 16px 0;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
  gap: 8px; margin: 8px 0; }
dl.facts div { background: #eef3fc; border-radius: 6px; padding: 6px 10px; }
dl.facts dt { font-size: .8rem; color: #55607a; }
dl.facts dd { margin: 0; font-size: 1.15rem; font-weight: 600; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; margin: 8px 0; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid #e2e5ea; padding: 4px 8px; text-align: left;
  vertical-align: middle; overflow-wrap: break-word; max-width: 28rem; }
td.long { overflow-wrap: anywhere; min-width: 9rem; }
p, figcaption { overflow-wrap: anywhere; }
th { background: #f0f2f5; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td img { width: 64px; height: 64px; object-fit: cover; border-radius: 4px; display: block; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: .85rem; color: #55607a; }
code { font: .9em ui-monospace, "SFMono-Regular", Menlo, monospace; background: #eef0f3;
  padding: 0 3px; border-radius: 3px; overflow-wrap: anywhere; }
p.small { font-size: .85rem; color: #55607a; margin: 4px 0; }
section.card { border-left: 4px solid #3b6fd4; padding-top: 8px; }
section.card h2 { font-size: 1rem; margin: 0 0 4px; padding: 0; border: 0; color: #3b6fd4; }
section.card dl.facts { grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); }
section.card dl.facts dd { font-size: 1rem; }
@media (max-width: 600px) { main { padding: 8px; } section { padding: 2px 10px 10px; }
  h1 { font-size: 1.3rem; } table { font-size: .8rem; } th, td { padding: 3px 4px; }
  td img { width: 44px; height: 44px; } td.long { min-width: 6.5rem; } }
"""


LONG_WORD = 20


def data_uri(path: Path) -> str:
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def inline_html(text: str) -> str:
    """A paragraph's inline marks as HTML elements; every run of text escaped."""
    tags = {"code": "code", "em": "em", "strong": "strong"}
    return "".join(
        html.escape(run) if kind == "text" else f"<{tags[kind]}>{html.escape(run)}</{tags[kind]}>"
        for kind, run in inline_tokens(text)
    )


def render_html(
    title: str, intro: list[str], sections: list[Section], card: Section | None = None
) -> str:
    """One self-contained page: inline CSS, every image a base64 data URI, no scripts.
    `card`, the summary, comes first, right under the title."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{e(title)}</h1>",
    ]
    if card is not None:
        parts.append(_html_section(card, "card"))
    parts += [f"<p>{inline_html(line)}</p>" for line in intro]
    if sections:
        links = " ".join(f'<a href="#{e(s.key)}">{e(s.title)}</a>' for s in sections)
        parts.append(f"<nav>{links}</nav>")
    parts += [_html_section(section) for section in sections]
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _html_section(section: Section, css: str = "") -> str:
    e = html.escape
    attrs = f' id="{e(section.key)}"' + (f' class="{css}"' if css else "")
    blocks = "".join(_html_block(block) for block in section.blocks)
    return f"<section{attrs}><h2>{e(section.title)}</h2>{blocks}</section>"


def _html_block(block: Block) -> str:
    e = html.escape
    if isinstance(block, Text):
        css = ' class="small"' if block.small else ""
        return f"<p{css}>{inline_html(block.text)}</p>"
    if isinstance(block, Heading):
        return f"<h3>{e(block.text)}</h3>"
    if isinstance(block, Facts):
        items = "".join(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in block.items)
        return f'<dl class="facts">{items}</dl>'
    if isinstance(block, Figure):
        return (
            f'<figure><img src="{data_uri(block.path)}" alt="{e(block.caption)}">'
            f"<figcaption>{e(block.caption)}</figcaption></figure>"
        )
    head = "".join(f"<th>{e(c)}</th>" for c in block.columns)
    body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
    caption = f"<caption>{e(block.caption)}</caption>" if block.caption else ""
    return (
        f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Thumb):
        return f'<td><img src="{data_uri(cell.path)}" alt="{html.escape(cell.alt)}"></td>'
    text = fmt(cell)
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        css = ' class="num"'
    else:  # long strings (URLs, paths) may break anywhere; words of a phrase stay whole
        css = ' class="long"' if max(map(len, text.split()), default=0) > LONG_WORD else ""
    return f"<td{css}>{html.escape(text)}</td>"


def md_escape(text: str) -> str:
    """Text safe inside a Markdown paragraph or table cell (no markup, no line breaks)."""
    text = " ".join(str(text).split())
    for ch in "\\`*_[]<>|#!":
        text = text.replace(ch, "\\" + ch)
    return text


def inline_md(text: str) -> str:
    """A paragraph's inline marks kept as Markdown; every run of text escaped."""
    marks = {"code": "`", "em": "*", "strong": "**"}
    out = []
    for kind, run in inline_tokens(text):
        if kind == "code":
            out.append(f"`{run}`")
            continue
        body = md_escape(run)  # which drops the spaces that separate a run from a mark: put back
        if kind == "text":
            body = " " * (run[:1] == " ") + body + " " * (run[-1:] == " " and body != "")
        out.append(body if kind == "text" else marks[kind] + body + marks[kind])
    return "".join(out)


def render_markdown(
    title: str,
    intro: list[str],
    sections: list[Section],
    folder: Path,
    card: Section | None = None,
) -> str:
    """Markdown that refers to images by paths relative to `folder` (where report.md lives);
    `card`, the summary, first."""
    lines = [f"# {md_escape(title)}", ""]
    if card is not None:
        lines += markdown_section(card, folder)
    lines += [f"{inline_md(line)}\n" for line in intro]
    for section in sections:
        lines += markdown_section(section, folder)
    return "\n".join(lines).rstrip() + "\n"


def markdown_section(section: Section, folder: Path) -> list[str]:
    lines = [f"## {md_escape(section.title)}", ""]
    for block in section.blocks:
        lines += [*_md_block(block, folder), ""]
    return lines


def _md_block(block: Block, folder: Path) -> list[str]:
    if isinstance(block, Text):
        return [inline_md(block.text)]
    if isinstance(block, Heading):
        return [f"### {md_escape(block.text)}"]
    if isinstance(block, Facts):
        return [f"- **{md_escape(k)}**: {md_escape(v)}" for k, v in block.items]
    if isinstance(block, Figure):
        return [f"![{md_escape(block.caption)}]({_rel(block.path, folder)})"]
    lines = [f"**{md_escape(block.caption)}**", ""] if block.caption else []
    lines.append("| " + " | ".join(md_escape(c) for c in block.columns) + " |")
    lines.append("|" + "---|" * len(block.columns))
    for row in block.rows:
        lines.append("| " + " | ".join(_md_cell(c, folder) for c in row) + " |")
    return lines


def _md_cell(cell: Cell, folder: Path) -> str:
    if isinstance(cell, Thumb):
        return f"![{md_escape(cell.alt)}]({_rel(cell.path, folder)})"
    return md_escape(fmt(cell))


def _rel(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()
