"""OpenSSH's ``allowed_signers`` file (ssh-keygen(1), ALLOWED SIGNERS), as git and
``ssh-keygen -Y verify`` read it: ``PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]``.

Options: ``cert-authority`` (the key is a CA whose user certificates name the
principal), ``namespaces="…"`` (patterns; regplan needs ``regplan-plan``),
``valid-after="…"`` and ``valid-before="…"`` (``YYYYMMDD[HHMM[SS]]``, ``Z`` for UTC,
else local time). Any other option is an error at its line and column, as a mistake
in a policy file is. Pure: the caller reads the file.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from datetime import UTC, datetime

import attrs

from regplan.plans import sshsig

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        sshsig.SK_ED25519,
        sshsig.SK_ECDSA,
    }
)
OPTIONS = ("cert-authority", "namespaces", "valid-after", "valid-before")


class LineError(ValueError):
    """A mistake in one line: ``column`` (1-based) says where."""

    def __init__(self, column: int, message: str) -> None:
        super().__init__(message)
        self.column = column


@attrs.frozen(kw_only=True)
class Signer:
    """One line of an allowed_signers file (or a plain OpenSSH ``.pub`` key line)."""

    principals: str
    """Comma-separated patterns (``*``, ``?``, ``!`` as OpenSSH matches them)."""
    blob: bytes
    """The key (a CA's, with ``cert_authority``) in SSH wire form."""
    cert_authority: bool = False
    namespaces: str | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None

    def allows(self, principal: str) -> bool:
        return match_list(principal, self.principals)

    def for_regplan(self) -> bool:
        return self.namespaces is None or match_list(sshsig.NAMESPACE, self.namespaces)

    def window_problem(self, at: datetime) -> str:
        """Why the key may not sign at ``at`` ("" when it may)."""
        if self.valid_after is not None and at < self.valid_after:
            return f"is valid only from {_when(self.valid_after)}"
        if self.valid_before is not None and at >= self.valid_before:
            return f"expired on {_when(self.valid_before)} (valid-before)"
        return ""


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def match(name: str, pattern: str) -> bool:
    """OpenSSH's match_pattern: ``*`` any run of characters, ``?`` one, the rest itself."""
    return _compiled(pattern).fullmatch(name) is not None


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def match_list(name: str, patterns: str) -> bool:
    """OpenSSH's match_pattern_list: a negated match (``!pattern``) wins over any other."""
    found = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if match(name, pattern[1:] if negated else pattern):
            if negated:
                return False
            found = True
    return found


def parse_line(line: str) -> Signer:
    """One non-comment line; LineError with the column of the mistake."""
    at = len(line) - len(line.lstrip())
    principals, at = _token(line, at)
    if not principals:
        raise LineError(at + 1, "no principals")
    word, _ = _token(line, _skip(line, at))
    if not word:
        raise LineError(
            _skip(line, at) + 1,
            "not a trusted key line (a regplan or OpenSSH public key, or an allowed_signers "
            "line: PRINCIPALS [OPTIONS] KEYTYPE BASE64)",
        )
    options: Options = {}
    if word not in KEY_TYPES:
        options, at = _options(line, _skip(line, at))
    return _signer(principals.strip('"'), options, line, _skip(line, at))


def public_line(line: str) -> Signer:
    """A plain OpenSSH public key line (``ssh-ed25519 AAAA… bob@ops``), the comment as its
    principal: ``--trust bob.pub`` as ssh-keygen wrote it."""
    fields = line.split()
    signer = _signer("*", {}, line, len(line) - len(line.lstrip()))
    name = " ".join(fields[2:])
    return attrs.evolve(signer, principals=name or sshsig.fingerprint(signer.blob))


Options = dict[str, tuple[str | bool, int]]
"""option name -> (its value, or True for a flag; the column of its value)."""


def _signer(principals: str, options: Options, line: str, at: int) -> Signer:
    kind, end = _token(line, at)
    if kind not in KEY_TYPES:
        raise LineError(at + 1, f"unknown key type {kind[:40]!r}")
    key, _ = _token(line, _skip(line, end))
    try:
        blob = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        blob = b""
    if not blob or sshsig.key_type(blob) != kind:
        raise LineError(_skip(line, end) + 1, f"malformed {kind} key")
    return Signer(
        principals=principals,
        blob=blob,
        cert_authority="cert-authority" in options,
        namespaces=_text(options.get("namespaces")),
        valid_after=_time(options.get("valid-after")),
        valid_before=_time(options.get("valid-before")),
    )


def _text(option: tuple[str | bool, int] | None) -> str | None:
    return option[0] if option is not None and isinstance(option[0], str) else None


def _skip(line: str, at: int) -> int:
    while at < len(line) and line[at] in " \t":
        at += 1
    return at


def _token(line: str, at: int) -> tuple[str, int]:
    """The word at ``at`` (a double-quoted run may hold spaces) and where it ends."""
    start, quoted = at, False
    while at < len(line) and (quoted or line[at] not in " \t"):
        quoted ^= line[at] == '"'
        at += 1
    return line[start:at], at


def _options(line: str, at: int) -> tuple[Options, int]:
    """``opt[,opt…]`` at ``at``: each known, with its quoted value where it takes one."""
    found: Options = {}
    text, end = _token(line, at)
    column = at
    for part in _split_options(text):
        name, eq, value = part.partition("=")
        name = name.lower()
        if name not in OPTIONS:
            raise LineError(column + 1, f"unknown option {name[:40]!r}")
        if (name == "cert-authority") == bool(eq):
            raise LineError(column + 1, f"option {name!r} {'takes no' if eq else 'needs a'} value")
        if eq and not (len(value) >= 2 and value[0] == value[-1] == '"'):
            raise LineError(column + len(name) + 2, f"option {name!r}: value must be quoted")
        if name in found:
            raise LineError(column + 1, f"option {name!r} given twice")
        found[name] = (value[1:-1] if eq else True, column + len(name) + 2)
        column += len(part) + 1
    return found, end


def _split_options(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for c in text:
        if c == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        quoted ^= c == '"'
        current += c
    return [*parts, current]


def _time(option: tuple[str | bool, int] | None) -> datetime | None:
    if option is None or not isinstance(option[0], str):
        return None
    value, column = option[0], option[1]
    try:
        return parse_time(value)
    except ValueError:
        raise LineError(column, f"{value[:40]!r} is not a time (YYYYMMDD[HHMM[SS]][Z])") from None


def parse_time(value: str) -> datetime:
    """OpenSSH's absolute time: ``YYYYMMDD``, ``YYYYMMDDHHMM`` or ``YYYYMMDDHHMMSS``,
    UTC with a trailing ``Z``, else the local time zone."""
    utc = value.endswith("Z")
    digits = value[:-1] if utc else value
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if not digits.isdigit() or len(digits) not in formats:
        raise ValueError(value)
    parsed = datetime.strptime(digits, formats[len(digits)])
    return parsed.replace(tzinfo=UTC) if utc else parsed.astimezone()


def parse(text: str, source: str) -> list[Signer]:
    """Every line of an allowed_signers file; LineError's become ``SOURCE:LINE:COLUMN:``
    messages (ValueError, the first one)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append(parse_line(line))
        except LineError as e:
            raise ValueError(f"{source}:{n}:{e.column}: {e}") from None
    return out
