"""Metadata shared by the domains' assets: tables shown as Markdown in the Dagster UI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
import pandas as pd


def markdown_table(
    rows: pd.DataFrame | Sequence[Mapping],
    *,
    limit: int | None = None,
    text_width: int | None = None,
    floatfmt: str = "g",
    empty: str = "(none)",
) -> dg.MetadataValue:
    """Rows as a Markdown table (a preview in the Dagster UI), or `empty` when there are none.

    rows: a DataFrame or a list of dicts, of which the first `limit` are shown; with `text_width`, text
    columns are cut to that many characters. floatfmt: how numbers are printed (tabulate's format).
    """
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows[:limit]))
    frame = frame.head(limit) if limit is not None else frame
    if frame.empty:
        return dg.MetadataValue.md(empty)
    if text_width is not None:
        frame = frame.copy()
        for column in frame.columns:
            if frame[column].dtype == object or isinstance(frame[column].dtype, pd.StringDtype):
                frame[column] = frame[column].astype(str).str.slice(0, text_width)
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=floatfmt))
