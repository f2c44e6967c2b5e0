"""The report's document model rendered to Markdown and HTML."""

from tasks.report.document import Section, Table, Text, md_escape, render_html, render_markdown


def test_markdown_escaping_keeps_tables_intact(tmp_path):
    assert md_escape("a|b <i>x</i>\nc") == "a\\|b \\<i\\>x\\</i\\> c"
    section = Section("s", "S", [Table(["k"], [["x|y"]]), Text("*bold*")])
    text = render_markdown("T", [], [section], tmp_path)
    assert "| x\\|y |" in text and "\\*bold\\*" in text
    assert "<i>" not in render_html("T <i>", ["<b>"], [section])
