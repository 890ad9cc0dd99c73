"""Dagster metadata shared by the assets: a short Markdown preview of a frame."""

import polars as pl


def markdown_preview(frame: pl.DataFrame, rows: int = 5) -> str:
    head = frame.head(rows)
    if head.width == 0:
        return ""
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * head.width]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in head.iter_rows()]
    return "\n".join(lines)
