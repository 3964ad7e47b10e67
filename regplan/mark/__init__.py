"""The registry-wide mark and sweep, as SQL on an embedded DuckDB.

What is registry-wide (which blobs and layer links something that stays still uses) is
decided once, in SQL over columnar tables, under a memory limit, with spill to a
temporary folder; what is per repository and worded (which tags a request removes,
which revisions follow them, every reason) stays in Python (regplan.decide).

``sql`` holds the statements (portable SQL: plain joins and anti-joins, no recursion);
``tables`` loads the inventory into tables and runs them.
"""
