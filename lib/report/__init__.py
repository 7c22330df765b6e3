"""Rows -> the terminal summary, Markdown, JSON, baselines (compare), snapshots and the figure."""
