"""markdown_table: the one Markdown preview of the assets' metadata."""

import pandas as pd

from learning_pipeline.defs.metadata import markdown_table


def test_rows_limit_text_width_and_numbers():
    rows = [{"name": "x" * 100, "score": 0.123456, "n": i} for i in range(30)]
    text = markdown_table(rows, limit=20, text_width=8, floatfmt=".2f").value
    lines = text.splitlines()
    assert len(lines) == 2 + 20  # header, rule, 20 rows
    assert "xxxxxxxx " in lines[2] and "x" * 9 not in text and "0.12" in lines[2]
    frame = pd.DataFrame(rows)
    assert markdown_table(frame, limit=20, text_width=8, floatfmt=".2f").value == text


def test_empty_rows_give_the_placeholder():
    assert markdown_table([]).value == "(none)"
    assert markdown_table(pd.DataFrame(columns=["a"]), empty="(empty)").value == "(empty)"
