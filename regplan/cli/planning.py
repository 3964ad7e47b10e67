"""keygen and plan: decide what to remove and write a signed plan."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from regplan import workflow
from regplan.cli.base import (
    PathArg,
    age_of,
    cli,
    default_signer,
    emit_json,
    json_option,
    key_option,
    load_key,
    now,
    progress_of,
    quiet_option,
    settings_of,
    signer_option,
    storage_of,
    storage_options,
)
from regplan.cli.policies import SELECTION_FLAGS, policy_selection
from regplan.cli.pulls import pulls_option, with_pulls
from regplan.decide.flags import FLAGS, Flag, Retention
from regplan.decide.protect import Protect, parse_protect
from regplan.decide.selection import ImageSpec, Selection
from regplan.listing import use
from regplan.mark import tables
from regplan.plans import body as planbody
from regplan.plans import signing
from regplan.plans.plan import ListingRecord, Plan
from regplan.scan.layout import printable
from regplan.scan.traits import Traits
from regplan.storage import location
from regplan.storage.location import Location
from regplan.views import render

Decorated = TypeVar("Decorated", bound=Callable[..., Any])
F = TypeVar("F", bound=Callable[..., Any])


@cli.command()
@click.argument("keyfile", type=PathArg)
@click.option(
    "--comment",
    default=default_signer,
    help="The key holder's name, written after the public key and recorded with every "
    "signature the key makes (e.g. bob@review). [default: USER@HOST]",
)
@click.option(
    "--ssh",
    is_flag=True,
    help="Write an OpenSSH key (as ssh-keygen -t ed25519 -N '' does) that signs SSH "
    "signatures stock OpenSSH checks; trust it with an allowed_signers line.",
)
def keygen(keyfile: Path, comment: str, ssh: bool) -> None:
    """Write an Ed25519 KEYFILE (0600) and KEYFILE.pub."""
    keyid = signing.keygen(keyfile, comment=comment, ssh=ssh)
    click.echo(f"Wrote {keyfile} (private, 0600) and {keyfile}.pub; key id {keyid}")


def _option(flag: Flag, name: str, param: str, *, hidden: bool = False) -> Callable[[F], F]:
    """``flag`` as a click option (``name``: its option, or its old spelling)."""
    if flag.kind == "switch":
        return click.option(name, param, is_flag=True, help=flag.help, hidden=hidden)
    if flag.kind == "choice":
        return click.option(
            name,
            param,
            type=click.Choice(flag.choices),
            default=flag.default,
            show_default=True,
            help=flag.help,
            hidden=hidden,
        )
    kind = click.IntRange(0) if flag.kind == "count" else None
    return click.option(name, param, type=kind, metavar=flag.metavar, help=flag.help, hidden=hidden)


def retention_options(f: Decorated) -> Decorated:
    """plan's retention options, from the table (decide.flags.FLAGS), in its order."""
    for flag in reversed(FLAGS):
        if flag.alias is not None:
            f = _option(flag, flag.alias, flag.alias_param, hidden=True)(f)
        f = _option(flag, flag.option, flag.field)(f)
    return f


def _memory_limit(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else tables.memory_limit(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@cli.command()
@storage_options
@key_option("The key that signs the plan")
@click.option(
    "-o", "--output", type=PathArg, help="Plan file [default: plans/<UTC time>.plan.json]."
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="REPO[:TAG]",
    help="Remove a tag, or the whole repository when no tag (globs). With a "
    "retention rule: the repositories (and tags) the rule looks at.",
)
@click.option(
    "--untagged",
    multiple=True,
    metavar="REPO",
    help="Remove manifests no tag reaches (globs; index and referrer aware).",
)
@retention_options
@click.option(
    "--gc", is_flag=True, help="Registry-wide: blobs and layer links nothing kept references."
)
@click.option(
    "--gc-min-age", metavar="AGE", help="With --gc: spare blobs and layer links younger than AGE."
)
@click.option(
    "--uploads-older-than", metavar="AGE", help="Remove upload folders started more than AGE ago."
)
@click.option(
    "--leftovers-older-than",
    metavar="AGE",
    help="Remove temporary files a registry write left (name.<uuid>.tmp) older than AGE.",
)
@click.option("--prune", is_flag=True, help="Remove every empty directory (never the roots).")
@click.option(
    "--registry-version",
    type=click.Choice(["2", "3"]),
    help="The registry's major version: on 3, schema-1 tags are listed as problems "
    "(v3 cannot serve them).",
)
@click.option(
    "--policy",
    type=click.File("rb"),
    metavar="FILE",
    help="A cleanup policy (YAML, policies/README.md): its rules instead of --image, "
    "--untagged, retention and the registry-wide flags ('-' reads stdin).",
)
@click.option(
    "--protect",
    "protect",
    type=click.File("r", encoding="utf-8"),
    multiple=True,
    metavar="FILE",
    help="Images that must survive, whatever else is asked: lines repo:tag, "
    "repo@sha256:... or sha256:... ('-' reads stdin; # comments). Repeatable.",
)
@pulls_option
@click.option(
    "--listing",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Plan from this listing of the bucket instead of listing it: an inventory "
    "report's manifest (S3's manifest.json, Azure's <rule>-manifest.json, GCS's "
    "<config>_<time>_manifest.json), regplan list's Parquet, or a Parquet/CSV of key, size, "
    "last_modified, etag[, content]. With --gc, --gc-min-age must be at least the listing's age.",
)
@click.option(
    "--memory-limit",
    metavar="SIZE",
    callback=_memory_limit,
    help="The mark and sweep's memory (512MiB, 2GB); past it, it spills to TMPDIR. "
    "[default: 64MiB plus half of the mark's tables, at most a quarter of this machine's]",
)
@click.option(
    "--body",
    type=click.Choice(planbody.CHOICES),
    default="auto",
    show_default=True,
    help="Where the lists go: in the JSON, or a Parquet file beside it (PLAN.body.parquet) "
    f"that the signed JSON pins by SHA-256; auto: Parquet past {planbody.AUTO_TARGETS:,} targets.",
)
@signer_option
@json_option
@quiet_option
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to do, 2 when targets are planned.",
)
@click.pass_context
def plan(
    ctx: click.Context,
    /,
    root: str | None,
    config: Path | None,
    key: str,
    output: Path | None,
    signer: str | None,
    as_json: bool,
    quiet: bool,
    detailed_exitcode: bool,
    memory_limit: str | None,
    body: str,
    **sel: Any,
) -> None:
    """Decide what to remove and write a signed plan; changes nothing."""
    selection = with_pulls(_selection(sel), sel["pulls"])
    storage = storage_of(root, config)
    settings = settings_of(config)
    version = sel["registry_version"]
    traits = Traits(
        version=int(version) if version else None,
        sparse_indexes=settings is not None and settings.sparse_indexes,
    )
    if selection.prune and not location.has_folders(storage) and not quiet:
        click.echo(
            "Note: --prune has nothing to do on object storage: a bucket has no empty folders "
            "(a folder is gone with its last key).",
            err=True,
        )
    t = now()
    private, name = load_key(key, signer)
    with contextlib.ExitStack() as stack:
        storage, record = _listed(stack, storage, sel["listing"], selection, t, memory_limit)
        scanning = stack.enter_context(progress_of("scanning paths", quiet=quiet, as_json=as_json))
        made = workflow.make_plan(
            storage=storage,
            selection=selection,
            argv=_argv(storage, sel),
            key=private,
            signer=name,
            now=t,
            progress=scanning.update,
            traits=traits,
            memory=memory_limit,
            listing=record,
            body=body,
        )
    path = output or Path("plans") / f"{workflow.timestamp(t)}.plan.json"
    with made:
        workflow.write_plan(made, path, body=body)
    header, counts = made.header, made.counts
    beside = path.with_name(planbody.name_for(path))
    body_path = beside if planbody.chosen(body, header.summary.targets) else None
    _report_written(header, counts, path, body_path, as_json=as_json, quiet=quiet)
    s = header.summary
    if detailed_exitcode and s.targets:
        ctx.exit(2)


def _listed(
    stack: contextlib.ExitStack,
    storage: Location,
    listing: Path | None,
    selection: Selection,
    t: datetime,
    memory: str | None,
) -> tuple[Location, ListingRecord | None]:
    """The storage to scan: through ``listing`` when given (plan --listing), and its record."""
    if listing is None:
        return storage, None
    opened, through, record = use.open_listing(
        storage, listing, selection=selection, now=t, memory=memory
    )
    stack.callback(opened.close)
    return through, record


def _report_written(
    header: Plan,
    counts: Mapping[str, int],
    path: Path,
    body: Path | None,
    *,
    as_json: bool,
    quiet: bool,
) -> None:
    """What ``plan`` says once the file is written (warnings go to stderr; ``quiet``:
    only they, or the JSON asked for)."""
    for p in header.request.selection.protect:
        if not p.matches:
            click.echo(
                f"Warning: --protect {p.source}: {printable(p.ref)} matches nothing", err=True
            )
    s = header.summary
    if as_json:
        emit_json(
            {
                "plan_id": header.plan_id,
                "path": str(path),
                **({"body": str(body)} if body is not None else {}),
                "targets": s.targets,
                "bytes": s.bytes,
                "kept": counts["kept"],
                "problems": counts["problems"],
            }
        )
        return
    if quiet:
        return
    click.echo(
        f"Plan {header.plan_id} written to {path}: {s.targets} directories to remove, "
        f"{render.human_bytes(s.bytes)}; {counts['kept']} kept; {counts['problems']} problems."
    )
    if body is not None:
        click.echo(f"Its lists are in {body}, pinned by the plan: keep the two files together.")
    click.echo(f"Review it with: regplan show {path}")


def _selection(sel: dict[str, Any]) -> Selection:
    protect: tuple[Protect, ...] = ()
    for f in sel["protect"]:
        name = "stdin" if f.name == "<stdin>" else f.name
        try:
            protect += parse_protect(f.read(), name)
        except UnicodeDecodeError:
            raise click.BadParameter(f"{name} is not UTF-8 text", param_hint="--protect") from None
    if sel["policy"] is not None:
        given = [k for k in SELECTION_FLAGS if sel[k] not in (None, False, (), "pushed")]
        return policy_selection(sel["policy"], protect, given)
    _old_spellings(sel)
    retention = Retention(**{f.field: sel[f.field] for f in FLAGS})
    if retention.active and not sel["images"]:
        raise click.UsageError("retention rules apply to the tags of --image repositories")
    if sel["gc_min_age"] and not sel["gc"]:
        raise click.UsageError("--gc-min-age goes with --gc")
    for flag in ("older_than", "gc_min_age", "uploads_older_than", "leftovers_older_than"):
        if sel[flag] is not None:
            age_of(sel[flag], flag)
    selection = Selection(
        protect=protect,
        images=tuple(ImageSpec.parse(i) for i in sel["images"]),
        untagged=sel["untagged"],
        prune=sel["prune"],
        retention=retention,
        gc=sel["gc"],
        gc_min_age=sel["gc_min_age"],
        uploads_older_than=sel["uploads_older_than"],
        leftovers_older_than=sel["leftovers_older_than"],
    )
    if selection.empty:
        raise click.UsageError(
            "nothing selected: give --image, --untagged, --gc, --uploads-older-than, "
            "--leftovers-older-than, --prune or --policy"
        )
    return selection


def _old_spellings(sel: dict[str, Any]) -> None:
    """A flag given by its old spelling is read as the flag, with a note on stderr."""
    for f in FLAGS:
        if f.alias is None or sel[f.alias_param] is None:
            continue
        if sel[f.field] is not None:
            raise click.UsageError(f"give {f.option} once ({f.alias} is its old name)")
        click.echo(f"Note: {f.alias} is deprecated: {f.option} says the same. {f.note}", err=True)
        sel[f.field] = sel[f.alias_param]


def _argv(storage: Location, sel: dict[str, Any]) -> list[str]:
    """The request, normalized: what a reviewer needs to repeat it (no key, no output path)."""
    argv = ["regplan", "plan", "--root", str(storage.root)]
    argv += [f"--image={i}" for i in sel["images"]] + [f"--untagged={u}" for u in sel["untagged"]]
    valued = [(f.option, f.field) for f in FLAGS if f.kind not in ("switch", "choice")]
    ages = ("gc_min_age", "uploads_older_than", "leftovers_older_than", "registry_version")
    for option, name in (*valued, *((f"--{a.replace('_', '-')}", a) for a in ages)):
        if sel[name] is not None:
            argv.append(f"{option}={sel[name]}")
    chosen = [f for f in FLAGS if f.kind == "choice" and sel[f.field] != f.default]
    argv += [f"{f.option}={sel[f.field]}" for f in chosen]
    if sel["policy"] is not None:
        argv.append(f"--policy={'-' if sel['policy'].name == '<stdin>' else sel['policy'].name}")
    argv += [f"--protect={'-' if f.name == '<stdin>' else f.name}" for f in sel["protect"]]
    argv += [f"--pulls={sel['pulls']}"] if sel["pulls"] is not None else []
    argv += [f"--listing={sel['listing']}"] if sel["listing"] is not None else []
    switches = [(f.option, f.field) for f in FLAGS if f.kind == "switch"]
    switches += [("--gc", "gc"), ("--prune", "prune")]
    argv += [option for option, name in switches if sel[name]]
    return argv
