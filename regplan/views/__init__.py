"""The review: pure views of a plan (text, Markdown, HTML, JSON, why)."""
