"""The report's HTML pages: tables and the model card render in the browser, escaped, self-contained."""

from __future__ import annotations

import base64
import re

from PIL import Image

from synthlora.model_card import card_html, card_markdown
from synthlora.report_pages import html_table, tsv_page


def test_a_tsv_page_escapes_every_cell_and_header():
    page = tsv_page('key\tprompt <b>\n1\ta <script>alert("x")</script> & \'y\'\n', "t & <u>")
    assert "<script>" not in page and "<b>" not in page.split("<body>")[1]
    assert "a &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;y&#x27;" in page
    assert "<th>prompt &lt;b&gt;</th>" in page
    assert "<title>t &amp; &lt;u&gt;</title>" in page and "<h1>t &amp; &lt;u&gt;</h1>" in page


def test_numeric_columns_are_right_aligned_and_text_columns_not():
    table = html_table(["run", "score", "note"], [["base", "0.5", ""], ["000001", "-1e-3", "7"], ["000002", "", "x"]])
    assert '<th class="num">score</th>' in table and "<th>note</th>" in table
    assert '<td class="num">-1e-3</td>' in table and '<td class="num"></td>' in table
    assert "<td>7</td>" in table  # one number among words is not a numeric column
    assert "<td>000001</td>" in table and "<td>base</td>" in table  # a word among numbers: a text column


def test_an_empty_tsv_and_a_header_only_tsv_give_a_page_with_an_empty_table():
    for text in ("", "key\tselected\treason\n"):
        page = tsv_page(text, "empty")
        assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "no rows" in page
    assert "<th>reason</th>" in tsv_page("key\tselected\treason\n", "empty")


def test_the_card_renders_the_same_blocks_as_markdown_and_as_html_with_embedded_pictures(tmp_path):
    png = tmp_path / "chart.png"
    Image.new("RGB", (4, 4), "red").save(png)
    blocks = [("title", "mira: character LoRA"), ("note", "**Demo run.** meaningless"),
              ("paragraph", "Trigger word: `mira_sl` <first> & more"),
              ("heading", "Tag frequencies"), ("bars", [("mira_sl", 6), ("a:b", 2)], str(png)),
              ("table", ["Tag", "Count"], [["a|b", 2]]), ("list", ["one `x`", "two"]),
              ("figure", str(png), "report/chart.png", "a chart")]
    md = card_markdown(blocks)
    assert md.startswith("# mira: character LoRA\n\n> **Demo run.** meaningless\n\n")
    assert "    a b : 0, 2" in md and "| a\\|b | 2 |" in md and "- one `x`\n- two" in md
    assert "![a chart](report/chart.png)" in md
    page = card_html(blocks)
    assert "<title>mira: character LoRA</title>" in page and '<p class="note"><strong>Demo run.</strong>' in page
    assert "Trigger word: <code>mira_sl</code> &lt;first&gt; &amp; more" in page
    assert "<li>one <code>x</code></li>" in page and '<td class="num">2</td>' in page
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 2 and base64.b64decode(uris[0]) == png.read_bytes()
    assert "http" not in page  # nothing fetched from anywhere
