"""Decide (pure): the request resolved, the mark and sweep, every image's verdict."""
