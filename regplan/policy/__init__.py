"""Cleanup policies kept in a file (YAML), reviewed in git and run on a schedule.

A policy is a list of rules. A rule selects tags: those matching ``tags`` (globs, or
``tags_regex``) and not ``exclude_tags_regex``, in the repositories matching
``repositories`` and not ``exclude`` (globs over the whole name). Regular expressions
match whole names, on RE2 (``decide.patterns``). Attached tags (signatures, attestations, SBOMs) are
never selected: they follow their image. A rule keeps a tag it selects when any of
its ``keep`` criteria holds (among the newest N it selects in that repository,
pushed or created within an age, a name matching a pattern, or ``all``).

How rules combine, the one rule: **a tag is removed when at least one rule selects
it and no rule that selects it keeps it.** A repository no rule selects is
untouched, and adding a rule that keeps everything it selects never removes more.
``untagged: AGE`` on a rule also removes its repositories' untagged manifests last
written more than AGE ago; ``registry:`` holds the registry-wide rules (stale
uploads, leftovers, ``gc`` with its grace period).

``decide.policy`` is the parsed policy, ``load`` reads a file (every mistake with its line
and column, against ``policy.schema.json``), ``decide.rules`` applies one to an
inventory. ``plan``'s retention flags are a one-rule policy (``decide.flags``), decided
by the same engine (``rules.judge``).
"""
