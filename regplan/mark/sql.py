"""The mark and sweep's SQL: plain joins and anti-joins over numbers.

Every table holds numbers only: a digest is the number ``mark.numbers`` gives it (a
blob's its place among the blobs in sorted order), a repository its place in the
inventory (``repo``), and an answer is numbers, which the caller turns back into
digests. Two digests are the same blob exactly when their numbers are equal.

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

A column of type ``DIGEST`` below holds a digest's number (an INTEGER); ``blob`` holds
0 to n - 1.
"""

from __future__ import annotations

STATIC = {
    "rev": "repo INTEGER, d DIGEST",
    "uses": "d DIGEST, b DIGEST",
    "tagcur": "repo INTEGER, tag INTEGER, d DIGEST",
    "layer": "repo INTEGER, b DIGEST",
    "blob": "b DIGEST",
}
DYNAMIC = {
    "removed": "repo INTEGER, d DIGEST",
    "layer_gone": "repo INTEGER, b DIGEST",
    "whole": "repo INTEGER",
    "failed": "repo INTEGER",
    "touched": "repo INTEGER",
    "lcand": "repo INTEGER, b DIGEST",
    "named": "b DIGEST",
}

STAYING = """
CREATE OR REPLACE TEMP VIEW staying AS
SELECT r.repo, r.d FROM rev r
WHERE r.repo NOT IN (SELECT repo FROM whole)
  AND NOT EXISTS (SELECT 1 FROM removed x WHERE x.repo = r.repo AND x.d = r.d)
"""
"""The revisions that stay (every repository but those removed whole)."""

NEEDED_LINKS = """
SELECT DISTINCT s.repo, u.b, s.d
FROM staying s
JOIN uses u ON u.d = s.d
JOIN lcand c ON c.repo = s.repo AND c.b = u.b
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
"""
"""--gc: the layer links no staying revision of their repository uses (repositories the
request decided, sound, not removed whole)."""

NAMED_HOLDERS = """
SELECT DISTINCT * FROM (
  SELECT n.b, s.repo, 0 AS how, s.d AS via, NULL AS tag
  FROM named n JOIN staying s ON s.d = n.b
  UNION ALL
  SELECT n.b, s.repo, 0, s.d, NULL
  FROM named n JOIN uses u ON u.b = n.b JOIN staying s ON s.d = u.d
  UNION ALL
  SELECT n.b, t.repo, 1, NULL, t.tag FROM named n JOIN tagcur t ON t.d = n.b
  WHERE t.repo NOT IN (SELECT repo FROM whole)
    AND NOT EXISTS (SELECT 1 FROM removed x WHERE x.repo = t.repo AND x.d = t.d)
  UNION ALL
  SELECT n.b, l.repo, 2, NULL, NULL FROM named n JOIN layer l ON l.b = n.b
  WHERE l.repo NOT IN (SELECT repo FROM whole)
    AND NOT EXISTS (SELECT 1 FROM layer_gone g WHERE g.repo = l.repo AND g.b = l.b)
  UNION ALL
  SELECT n.b, l.repo, 3, NULL, NULL FROM named n JOIN layer l ON l.b = n.b
  WHERE l.repo IN (SELECT repo FROM failed) AND l.repo NOT IN (SELECT repo FROM whole)
)
"""
"""What holds each blob the request freed (the plan names them in its reason): ``how``
0 a staying revision (the blob itself, or one its manifest uses: ``via``), 1 a staying
tag's current revision (``tag``), 2 a layer link that stays, 3 a layer link of a
repository that fails closed (it might use any)."""

UNHELD = """
SELECT b.b FROM blob b
WHERE NOT EXISTS (SELECT 1 FROM named n WHERE n.b = b.b)
  AND NOT EXISTS (SELECT 1 FROM staying s WHERE s.d = b.b)
  AND NOT EXISTS (SELECT 1 FROM staying s JOIN uses u ON u.d = s.d WHERE u.b = b.b)
  AND NOT EXISTS (
    SELECT 1 FROM tagcur t
    WHERE t.d = b.b AND t.repo NOT IN (SELECT repo FROM whole)
      AND NOT EXISTS (SELECT 1 FROM removed x WHERE x.repo = t.repo AND x.d = t.d))
  AND NOT EXISTS (
    SELECT 1 FROM layer l
    WHERE l.b = b.b AND l.repo NOT IN (SELECT repo FROM whole)
      AND (l.repo IN (SELECT repo FROM failed)
        OR NOT EXISTS (SELECT 1 FROM layer_gone g WHERE g.repo = l.repo AND g.b = l.b)))
"""
"""--gc: the blobs nothing that stays references (besides those the request freed): no
source of NAMED_HOLDERS names them, asked source by source."""
