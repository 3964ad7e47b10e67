"""``--approvals FILE`` (``REGPLAN_APPROVALS``): the approval rule a command holds a plan
to (apply, verify) or shows in the change ticket (show --format markdown)."""

from __future__ import annotations

from pathlib import Path

import click

from regplan.cli.base import ExistingFile
from regplan.plans.rule import Rule
from regplan.policy import approvals_file

approvals_option = click.option(
    "--approvals",
    "rule_file",
    type=ExistingFile,
    envvar=approvals_file.ENV,
    help="An approval rule file (regplan-approvals.yml: who may plan, who may approve, how "
    "many distinct approvers): the plan's signatures must meet it (exit 3 naming who is "
    f"missing). Without it, --require-signatures alone. [env: {approvals_file.ENV}]",
)


def rule_of(rule_file: Path | None) -> Rule | None:
    """The rule in the file ``--approvals`` names (every mistake on one line, exit 1)."""
    return approvals_file.read_file(rule_file) if rule_file is not None else None
