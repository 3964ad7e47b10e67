"""Decide: the request resolved (selection, or a policy's rules), the mark and sweep
(planner, reach, sweep; the registry-wide part in SQL, regplan.mark), every image's
verdict (images).

The rules (DESIGN.md section 2), in the order they apply:

* A removed tag takes its manifest revision, unless the revision is still
  reached from a kept tag (directly, as an index child, or as a referrer of a
  kept manifest) or from a revision that stays.
* ``--untagged`` takes the revisions no kept tag reaches; index children and
  referrers of reached manifests are reached.
* A removed index takes its children and a removed manifest its referrers,
  unless they are reached otherwise.
* A manifest we cannot read (or a tag whose link is corrupt) is fail closed:
  nothing in its repository that it might reference is removed.
* A blob goes when something removed referenced it and nothing that stays
  does, in any repository; a ``_layers`` link that stays counts as a reference.
* An attached tag (a signature, an attestation, a referrer) follows its subject,
  unless a ``--protect`` line names it: then it stays though its subject goes.
* Tag history entries of removed revisions go; tags that stay keep their own.
* ``--prune`` takes every directory left empty, never the roots.
* ``--uploads-older-than`` and ``--leftovers-older-than`` take what a write left
  (an upload folder, a ``<name>.<uuid>.tmp`` file) older than the age; what
  cannot be dated stays (stale).
* A policy (rules): a tag goes when at least one rule selects it and no rule
  that selects it keeps it; a repository's newest tag only under ``allow_empty``.
* What the walk could not see into (a folder it could not list, a symlink, a
  FIFO, a name a plan cannot hold: ``Inventory.blind``) is kept with all it
  might reference: inside a repository, that repository fails closed; anywhere
  under ``repositories/`` but an upload, no blob is removed at all (what is
  there might reference any of them); prune never counts it as empty.
"""
