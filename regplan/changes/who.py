"""Who runs this step: the local user and the host, as this machine says (the
environment's ``LOGNAME``/``USER`` first, as ``getpass`` reads them, else the account
of the process's user id). Recorded in the apply's history; it is what the operator's
own account shows, not a proof: the signatures are the proof of who planned and
approved."""

from __future__ import annotations

import getpass
import os
import pwd
import socket
from datetime import datetime

from regplan.changes.records import Action, By, Operator

LIMIT = 256
"""Characters of a user or host name recorded at the most."""


def local_user() -> str:
    try:
        return getpass.getuser()[:LIMIT]
    except (OSError, KeyError):  # no name in the environment and no account for the uid
        pass
    try:
        return pwd.getpwuid(os.getuid()).pw_name[:LIMIT]
    except KeyError:
        return f"uid {os.getuid()}"


def operator(action: Action, now: datetime) -> Operator:
    """This process's operator for one step at ``now``."""
    return Operator(
        action=action,
        user=local_user(),
        host=socket.gethostname()[:LIMIT],
        at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def by(action: Action, now: datetime, *, planner: str = "", approvers: tuple[str, ...] = ()) -> By:
    return By(operator=operator(action, now), planner=planner, approvers=approvers)
