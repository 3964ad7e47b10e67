"""The retention flags of ``plan``, once (pure).

``FLAGS`` is the one table of them: each flag's option (and a deprecated spelling), the
field that holds it (``Retention`` here, the plan's ``SelectionRecord``, its argv), and
what it is in the one-rule policy the flags compile to (``rule``): the rules engine
(``decide.rules``) decides for the flags as for a policy.

=====================  ==========================  ==============================
flag                   field (Retention, record)   in the rule
=====================  ==========================  ==============================
``--keep-last N``      ``keep_last``               ``keep.newest``
``--older-than AGE``   ``older_than``              ``keep.within``
``--match REGEX``      ``match``                   ``tags_regex``
``--exclude-tags RE``  ``exclude``                 ``exclude_tags_regex``
``--keep REGEX``       ``keep``                    ``keep.regex``
``--sort-by``          ``sort_by``                 ``keep.by``
``--allow-empty-repos``  ``allow_empty_repos``     ``allow_empty``
``--pulled-within AGE``  ``pulled_within``         ``keep.pulled_within``
=====================  ==========================  ==============================

``--pulled-within`` reads the pull records ``plan --pulls FILE`` gives (regplan.pulls).

``--image REPO[:TAG]`` is the rule's ``repositories`` and ``tags`` (one rule per
``--image``). In a policy, ``exclude`` lists repository globs; the flag that leaves tags
out by a regular expression is ``--exclude-tags`` (``--exclude`` is its old spelling).
"""

from __future__ import annotations

from typing import Any

import attrs

from regplan.decide import patterns
from regplan.decide.ages import parse_age
from regplan.decide.policy import Keep, Origin, Rule
from regplan.errors import SelectionError


@attrs.frozen(kw_only=True)
class Flag:
    field: str
    """Its field in ``Retention`` and in the plan's ``SelectionRecord``."""
    option: str
    metavar: str | None
    help: str
    rule: str
    """Where it goes in the rule: a ``Rule`` field, or ``keep.`` and a ``Keep`` field."""
    kind: str = "text"
    """``text``, ``count`` (an integer, 0 or more), ``regex``, ``age``, ``switch`` (a
    boolean flag), or ``choice``."""
    choices: tuple[str, ...] = ()
    default: str | None = None
    alias: str | None = None
    """An old spelling, still read, with a deprecation note on stderr."""
    note: str = ""
    """What the deprecation note adds."""

    @property
    def alias_param(self) -> str:
        """The parameter that holds a value given by the old spelling."""
        return f"old_{self.field}"


FLAGS: tuple[Flag, ...] = (
    Flag(
        field="keep_last",
        option="--keep-last",
        metavar="N",
        kind="count",
        rule="keep.newest",
        help="Retention: remove tags beyond the N newest.",
    ),
    Flag(
        field="older_than",
        option="--older-than",
        metavar="AGE",
        kind="age",
        rule="keep.within",
        help="Retention: remove tags older than AGE.",
    ),
    Flag(
        field="match",
        option="--match",
        metavar="REGEX",
        kind="regex",
        rule="tags_regex",
        help="Retention: only tags matching REGEX (whole name).",
    ),
    Flag(
        field="exclude",
        option="--exclude-tags",
        alias="--exclude",
        metavar="REGEX",
        kind="regex",
        rule="exclude_tags_regex",
        help="Retention: never tags matching REGEX (whole name). --exclude is its old "
        "name (in a policy, exclude lists repositories).",
        note="In a policy, exclude lists repository globs; tags are left out by "
        "exclude_tags_regex.",
    ),
    Flag(
        field="keep",
        option="--keep",
        metavar="REGEX",
        kind="regex",
        rule="keep.regex",
        help="Retention: never remove tags matching REGEX.",
    ),
    Flag(
        field="sort_by",
        option="--sort-by",
        metavar=None,
        kind="choice",
        choices=("pushed", "created"),
        default="pushed",
        rule="keep.by",
        help="Retention age: last push, or the image config's created.",
    ),
    Flag(
        field="allow_empty_repos",
        option="--allow-empty-repos",
        metavar=None,
        kind="switch",
        rule="allow_empty",
        help="Retention may remove every tag of a repository (and so the repository).",
    ),
    Flag(
        field="pulled_within",
        option="--pulled-within",
        metavar="AGE",
        kind="age",
        rule="keep.pulled_within",
        help="Retention: never remove tags pulled within AGE (needs --pulls FILE).",
    ),
)
BY_FIELD = {f.field: f for f in FLAGS}


@attrs.frozen(kw_only=True)
class Retention:
    """Rules over the tags of the repositories ``--image`` selects (``FLAGS``; ages as
    given, ``90d``)."""

    keep_last: int | None = None
    older_than: str | None = None
    match: str | None = None
    exclude: str | None = None
    keep: str | None = None
    sort_by: str = "pushed"
    allow_empty_repos: bool = False
    pulled_within: str | None = None

    @property
    def active(self) -> bool:
        """Whether a flag that selects or keeps tags is given (not only how to rank)."""
        return any(
            getattr(self, f.field) is not None for f in FLAGS if f.kind not in ("switch", "choice")
        )

    def check(self) -> None:
        """SelectionError naming the flag whose value cannot be used."""
        for f in FLAGS:
            value = getattr(self, f.field)
            if value is None:
                continue
            if f.kind == "count" and value < 0:
                raise SelectionError(f"{f.option} must be 0 or more")
            if f.kind == "choice" and value not in f.choices:
                expected = " or ".join(f.choices)
                raise SelectionError(f"{f.option} {value!r}: expected {expected}")
            if f.kind == "age":
                parse_age(value)
            if f.kind == "regex":
                try:
                    patterns.compiled(value)
                except patterns.PatternError as e:
                    raise SelectionError(
                        f"{f.option} {value!r}: not a regular expression ({e})"
                    ) from None


def rule(retention: Retention, repositories: str, tags: str | None, label: str) -> Rule:
    """The one rule the flags are: over the repositories (and tags) of one ``--image``."""
    keep: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    for f in FLAGS:
        part, _, name = f.rule.rpartition(".")
        (keep if part == "keep" else fields)[name] = getattr(retention, f.field)
    return Rule(
        name="flags",
        where=label,
        repositories=(repositories,),
        tags=(tags or "*",),
        keep=Keep(**keep),
        origin=Origin.FLAGS,
        **fields,
    )
