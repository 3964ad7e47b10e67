"""policy check: a cleanup policy file's mistakes, and what each rule selects."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import click

from regplan.cli.base import (
    ExistingFile,
    cli,
    emit_json,
    json_option,
    now,
    storage_of,
    storage_options,
)
from regplan.cli.pulls import pulls_option
from regplan.decide import rules
from regplan.decide.flags import FLAGS
from regplan.decide.protect import Protect
from regplan.decide.selection import Selection
from regplan.errors import PolicyError
from regplan.policy import load
from regplan.pulls import store
from regplan.pulls.facts import Looks
from regplan.scan.inventory import ProblemCode
from regplan.scan.layout import printable
from regplan.storage import location

SELECTION_FLAGS = {
    "images": "--image",
    "untagged": "--untagged",
    **{f.field: f.option for f in FLAGS},
    **{f.alias_param: f.alias for f in FLAGS if f.alias is not None},
    **{n: "--" + n.replace("_", "-") for n in ("gc", "gc_min_age", "uploads_older_than")},
    **{n: "--" + n.replace("_", "-") for n in ("leftovers_older_than", "prune")},
}
"""plan's options a policy file holds instead (refused beside --policy), by parameter."""


def policy_selection(f: IO[bytes], protect: tuple[Protect, ...], given: list[str]) -> Selection:
    """``plan --policy``: the policy's rules and registry-wide rules, and --protect."""
    if given:
        flags = ", ".join(SELECTION_FLAGS[g] for g in given)
        raise click.UsageError(f"--policy holds the rules: put {flags} in the policy file")
    name = "stdin" if f.name == "<stdin>" else str(f.name)
    policy = load.read_stream(f, name)
    r = policy.registry
    return Selection(
        policy=policy,
        protect=protect,
        gc=r.gc,
        gc_min_age=r.gc_min_age,
        uploads_older_than=r.uploads_older_than,
        leftovers_older_than=r.leftovers_older_than,
        prune=r.prune,
    )


@cli.group("policy")
def policy_group() -> None:
    """Cleanup policies kept in a file (policies/README.md)."""


@policy_group.command("check")
@click.argument("file", type=ExistingFile)
@storage_options
@pulls_option
@json_option
@click.pass_context
def check(
    ctx: click.Context,
    file: Path,
    root: str | None,
    config: Path | None,
    pulls: Path | None,
    as_json: bool,
) -> None:
    """Every mistake in FILE with its line and column; with --root (or --config), what
    each rule selects and would remove there, without writing a plan."""
    try:
        policy = load.read_file(file)
    except PolicyError as e:
        for line in e.errors:
            click.echo(f"Error: {line}", err=True)
        ctx.exit(PolicyError.exit_code)
    if root is None and config is None:
        shown = printable(str(file))
        click.echo(f"{shown}: {len(policy.rules)} rules, no mistakes (sha256 {policy.sha256})")
        return
    storage = storage_of(root, config)
    inv = location.read(storage, created=policy.by_created, mtimes=policy.untagged_ages)
    idle = list(rules.unselected(policy, sorted(inv.repositories)))
    for rule in idle:
        click.echo(
            f"Error: {printable(rule.where)}:1: rule {rule.name!r} selects no repository on "
            f"{printable(str(storage.root))}",
            err=True,
        )
    looks = None if pulls is None else Looks(store.read(pulls), inv)
    outcome = rules.apply(policy, inv, now(), looks)
    _report(outcome, as_json=as_json)
    if idle:
        ctx.exit(PolicyError.exit_code)


def _report(outcome: rules.Outcome, *, as_json: bool) -> None:
    if as_json:
        emit_json(
            [
                {
                    "rule": c.rule.name,
                    "where": c.rule.where,
                    "repositories": c.repositories,
                    "tags": c.tags,
                    "removes": c.removes,
                    "kept_by_pulls": c.by_pulls,
                }
                for c in outcome.counts
            ]
        )
        return
    width = max(len(c.rule.name) for c in outcome.counts)
    click.echo(f"{'rule':<{width}}  repositories  tags  removes  where")
    for c in outcome.counts:
        pulled = f" (pulls keep {c.by_pulls})" if c.by_pulls else ""
        click.echo(
            f"{c.rule.name:<{width}}  {c.repositories:>12}  {c.tags:>4}  {c.removes:>7}  "
            f"{printable(c.rule.where)}{pulled}"
        )
    for p in outcome.problems:
        if p.code is ProblemCode.PULLS_UNCOVERED:
            click.echo(f"Note: {printable(p.message)}", err=True)
    click.echo(
        f"{len(outcome.tags)} tags removed in all (a tag goes when a rule selects it and no "
        "rule that selects it keeps it); the plan adds what they alone reference."
    )
