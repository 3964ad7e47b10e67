"""``--protect FILE``: images that must survive whatever the request (pure parsing)."""

from __future__ import annotations

import attrs

from regplan.errors import SelectionError
from regplan.scan.layout import Digest, parse_digest


@attrs.frozen(kw_only=True)
class Protect:
    """One line of a ``--protect`` file: an image that must survive, whatever the request."""

    source: str
    """``FILE:LINE``, for the reviewer and for warnings."""
    ref: str
    """As written: ``repo:tag``, ``repo@sha256:...`` or ``sha256:...`` (a registry host
    in front, as ``kubectl`` prints images, is allowed and ignored)."""
    repo: str | None = None
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, ref: str, source: str) -> Protect:
        """Parse one reference; SelectionError naming ``source`` when it is none of the forms."""
        bad = SelectionError(
            f"--protect {source}: {ref[:120]!r} is not repo:tag, repo@sha256:... or sha256:..."
        )
        name, at, digest_text = ref.partition("@")
        digest = None
        if ref.startswith("sha256:"):
            name, digest_text, at = "", ref, "@"
        if at:
            try:
                digest = parse_digest(digest_text)
            except ValueError:
                raise bad from None
        if not ref.isprintable():  # a control character, a stray byte: not a reference
            raise SelectionError(
                f"--protect {source}: {ref[:120]!r} has a character that is not printable"
            )
        first, slash, rest = name.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            name = rest  # registry.example:5000/team/app:v1 -> team/app:v1
        repo, colon, tag = name.rpartition(":")
        if not colon or "/" in tag:
            repo, tag = name, ""
        if (not repo and name) or (not tag and digest is None) or any(c.isspace() for c in name):
            raise bad
        return cls(source=source, ref=ref, repo=repo or None, tag=tag or None, digest=digest)


def parse_protect(text: str, name: str) -> tuple[Protect, ...]:
    """The entries of a protect file: one reference per line, ``#`` comments, blank lines;
    read as people save it (a UTF-8 byte order mark, CRLF line ends)."""
    out = []
    for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        ref = line.split("#", 1)[0].strip()
        if ref:
            out.append(Protect.parse(ref, f"{name}:{n}"))
    return tuple(out)
