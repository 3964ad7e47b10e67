"""A parsed cleanup policy (the format and how rules combine: regplan.policy). No I/O here."""

from __future__ import annotations

import enum

import attrs


class Origin(enum.Enum):
    """Where a rule was written: a policy file, or ``plan``'s flags (decide.flags)."""

    POLICY = "policy"
    FLAGS = "flags"


@attrs.frozen(kw_only=True)
class Keep:
    """What a rule keeps of the tags it selects: any criterion that holds keeps a tag."""

    newest: int | None = None
    by: str = "pushed"
    """``pushed`` (the tag's last push) or ``created`` (the image config's time)."""
    within: str | None = None
    """An age (``30d``): tags pushed (or created) more recently are kept."""
    tags: tuple[str, ...] = ()
    """Globs: tags whose name matches are kept."""
    regex: str | None = None
    """A regular expression: tags whose whole name matches are kept."""
    pulled_within: str | None = None
    """An age: tags pulled more recently are kept (``plan --pulls``; regplan.pulls)."""
    most_recently_pulled: int | None = None
    """The N tags pulled most recently are kept."""
    all: bool = False
    """Every tag the rule selects is kept (a protecting rule)."""

    @property
    def by_pulls(self) -> bool:
        return self.pulled_within is not None or self.most_recently_pulled is not None


@attrs.frozen(kw_only=True)
class Rule:
    name: str
    where: str
    """``FILE:LINE`` of the rule, for reasons and errors."""
    repositories: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    tags: tuple[str, ...] = ("*",)
    tags_regex: str | None = None
    exclude_tags_regex: str | None = None
    """A regular expression: tags whose whole name matches are not selected."""
    keep: Keep | None = None
    """None: the rule selects no tags (it only has ``untagged``)."""
    untagged: str | None = None
    """An age: untagged manifests of the rule's repositories older than it go."""
    allow_empty: bool = False
    """The rule may remove a repository's newest tag (and so empty it); without, the
    newest tag of every repository stays."""
    origin: Origin = Origin.POLICY
    """The flags' rule dates a tag without a current link by its push (a policy's by
    ``keep.by``) and ranks a time of 0 as a time (a policy as no time)."""

    @property
    def label(self) -> str:
        return f'policy rule "{self.name}" ({self.where})'


@attrs.frozen(kw_only=True)
class Registry:
    """Registry-wide rules (the flags of the same names)."""

    uploads_older_than: str | None = None
    leftovers_older_than: str | None = None
    gc: bool = False
    gc_min_age: str | None = None
    prune: bool = False


@attrs.frozen(kw_only=True)
class Policy:
    file: str
    """The file's name as given."""
    text: str
    sha256: str
    rules: tuple[Rule, ...]
    registry: Registry = Registry()

    @property
    def untagged_ages(self) -> bool:
        return any(r.untagged for r in self.rules)

    @property
    def by_pulls(self) -> bool:
        """Whether a rule keeps by pulls (a plan then needs ``--pulls``)."""
        return any(r.keep is not None and r.keep.by_pulls for r in self.rules)

    @property
    def by_created(self) -> bool:
        return any(r.keep is not None and r.keep.by == "created" for r in self.rules)
