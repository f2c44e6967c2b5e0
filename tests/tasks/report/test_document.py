"""The report's document model rendered to Markdown and HTML."""

from tasks.report.document import (
    Section,
    Table,
    Text,
    inline_tokens,
    md_escape,
    render_html,
    render_markdown,
)


def test_markdown_escaping_keeps_tables_intact(tmp_path):
    assert md_escape("a|b <i>x</i>\nc") == "a\\|b \\<i\\>x\\</i\\> c"
    section = Section("s", "S", [Table(["k"], [["x|y *not bold*"]])])
    text = render_markdown("T", [], [section], tmp_path)
    assert "| x\\|y \\*not bold\\* |" in text  # table cells are data: no markup at all
    assert "<i>" not in render_html("T <i>", ["<b>"], [section])


def test_paragraphs_render_inline_code_and_emphasis_not_literal_markdown(tmp_path):
    note = "run `pixelpipe demo --weights <file>` *now*, **then** look; 2*3*4 stays, a_b too"
    page = render_html("T", [note], [Section("s", "S", [Text(note)])])
    shown = (
        "run <code>pixelpipe demo --weights &lt;file&gt;</code> <em>now</em>,"
        " <strong>then</strong> look; 2*3*4 stays, a_b too"
    )
    assert page.count(shown) == 2  # the intro line and the Text block
    assert "`" not in page
    markdown = render_markdown("T", [note], [Section("s", "S", [Text(note)])], tmp_path)
    kept = "run `pixelpipe demo --weights <file>` *now*, **then** look; 2\\*3\\*4 stays, a\\_b too"
    assert markdown.count(kept) == 2


def test_inline_tokens_split_a_paragraph_into_runs():
    assert inline_tokens("a `b` *c*  **d**\n e") == [
        ("text", "a "),
        ("code", "b"),
        ("text", " "),
        ("em", "c"),
        ("text", " "),
        ("strong", "d"),
        ("text", " e"),
    ]
    assert inline_tokens("no marks: * a * b") == [("text", "no marks: * a * b")]


def test_a_small_paragraph_is_marked_small():
    page = render_html("T", [], [Section("s", "S", [Text("legend", small=True), Text("body")])])
    assert '<p class="small">legend</p>' in page and "<p>body</p>" in page
