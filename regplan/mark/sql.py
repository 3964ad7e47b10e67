"""The mark and sweep's SQL: plain joins and anti-joins over digests kept as binaries.

A digest is a BLOB (``dg``): the 32 bytes of a sha256 digest, the text of any other
(never 32 bytes long, so the two never meet). Repositories are numbered (``repo``).

Static tables (the inventory, loaded once):

* ``rev(repo, d)``: the manifest revisions of each repository;
* ``uses(d, b)``: the blobs (config, layers) each readable manifest references;
* ``tagcur(repo, tag, d)``: what each tag's ``current/link`` names (``tag``: a number);
* ``layer(repo, b)``: each repository's layer links;
* ``blob(b)``: every blob with data.

Tables of a decision (what the per-repository rules removed, loaded before each step):

* ``removed(repo, d)``: revisions that go; ``layer_gone(repo, b)``: layer links that go;
* ``whole(repo)``: repositories removed whole; ``failed(repo)``: those that fail closed;
* ``touched(repo)``: repositories the request decided (the others keep all they have);
* ``lcand(repo, b)``: layer links a step asks about; ``named(b)``: blobs the request
  freed, which the plan explains.
"""

from __future__ import annotations

DIGEST = (
    "CREATE OR REPLACE TEMP MACRO dg(x) AS "
    "CASE WHEN starts_with(x, 'sha256:') AND length(x) = 71 "
    "THEN unhex(substr(x, 8)) ELSE encode(x) END"
)

STATIC = {
    "rev": "repo INTEGER, d BLOB",
    "uses": "d BLOB, b BLOB",
    "tagcur": "repo INTEGER, tag INTEGER, d BLOB",
    "layer": "repo INTEGER, b BLOB",
    "blob": "b BLOB",
}
DYNAMIC = {
    "removed": "repo INTEGER, d BLOB",
    "layer_gone": "repo INTEGER, b BLOB",
    "whole": "repo INTEGER",
    "failed": "repo INTEGER",
    "touched": "repo INTEGER",
    "lcand": "repo INTEGER, b BLOB",
    "named": "b BLOB",
}

STAYING = """
CREATE OR REPLACE TEMP VIEW staying AS
SELECT r.repo, r.d FROM rev r
WHERE r.repo NOT IN (SELECT repo FROM whole)
  AND NOT EXISTS (SELECT 1 FROM removed x WHERE x.repo = r.repo AND x.d = r.d)
"""
"""The revisions that stay (every repository but those removed whole)."""

NEEDED_LINKS = """
SELECT DISTINCT c.repo, c.b, s.d
FROM lcand c
JOIN staying s ON s.repo = c.repo
JOIN uses u ON u.d = s.d AND u.b = c.b
ORDER BY 1, 2, 3
"""
"""Of the layer links asked about, those a staying revision of their repository uses,
and by which revisions."""

FREE_LINKS = """
SELECT l.repo, l.b FROM layer l
WHERE l.repo IN (SELECT repo FROM touched)
  AND l.repo NOT IN (SELECT repo FROM whole)
  AND l.repo NOT IN (SELECT repo FROM failed)
  AND NOT EXISTS (SELECT 1 FROM layer_gone g WHERE g.repo = l.repo AND g.b = l.b)
  AND NOT EXISTS (
    SELECT 1 FROM staying s JOIN uses u ON u.d = s.d
    WHERE s.repo = l.repo AND u.b = l.b)
ORDER BY 1, 2
"""
"""--gc: the layer links no staying revision of their repository uses (repositories the
request decided, sound, not removed whole)."""

HOLDERS = """
CREATE OR REPLACE TEMP VIEW holders AS
SELECT s.d AS b, s.repo, 0 AS how, s.d AS via, NULL AS tag FROM staying s
UNION ALL
SELECT u.b, s.repo, 0, s.d, NULL FROM staying s JOIN uses u ON u.d = s.d
UNION ALL
SELECT t.d, t.repo, 1, NULL, t.tag FROM tagcur t
WHERE t.repo NOT IN (SELECT repo FROM whole)
  AND NOT EXISTS (SELECT 1 FROM removed x WHERE x.repo = t.repo AND x.d = t.d)
UNION ALL
SELECT l.b, l.repo, 2, NULL, NULL FROM layer l
WHERE l.repo NOT IN (SELECT repo FROM whole)
  AND NOT EXISTS (SELECT 1 FROM layer_gone g WHERE g.repo = l.repo AND g.b = l.b)
UNION ALL
SELECT l.b, l.repo, 3, NULL, NULL FROM layer l
WHERE l.repo IN (SELECT repo FROM failed) AND l.repo NOT IN (SELECT repo FROM whole)
"""
"""Every reference that stays, by blob: ``how`` 0 a staying revision (itself, or a blob
its manifest uses: ``via``), 1 a staying tag's current revision, 2 a layer link that
stays, 3 a layer link of a repository that fails closed (it might use any)."""

NAMED_HOLDERS = """
SELECT DISTINCT h.b, h.repo, h.how, h.via, h.tag
FROM holders h JOIN named n ON n.b = h.b
"""
"""What holds each blob the request freed (the plan names it in the reason)."""

NAMED_HELD = """
SELECT DISTINCT n.b FROM named n WHERE n.b IN (SELECT b FROM holders)
"""

UNHELD = """
SELECT b.b FROM blob b
WHERE b.b NOT IN (SELECT b FROM named)
  AND NOT EXISTS (SELECT 1 FROM holders h WHERE h.b = b.b)
"""
"""--gc: the blobs nothing that stays references (besides those the request freed)."""
