"""The command line: parse, call the core, render. Exit codes: README, "Exit codes"."""

from __future__ import annotations

import gc
import getpass
import json
import logging
import os
import shlex
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from regplan import (
    __version__,
    apply,
    approvals,
    location,
    online,
    render,
    report,
    reviewjson,
    s3,
    signing,
    ticket,
    walkthrough,
    why,
    workflow,
)
from regplan.config import ENV_ROOT, rootdirectory, running
from regplan.errors import ApplyError, CheckFailed, RegplanError, SelectionError
from regplan.layout import printable
from regplan.location import Location
from regplan.planfile import PlanStream
from regplan.progress import Reporter
from regplan.s3 import S3Storage
from regplan.selection import (
    ImageSpec,
    Protect,
    Retention,
    Selection,
    parse_age,
    parse_protect,
)

if TYPE_CHECKING:  # httpx, under regclient, is 17 MiB: imported only to ask a registry
    from regplan.regclient import RegistryClient

log = logging.getLogger("regplan")

PathArg = click.Path(path_type=Path)
ExistingFile = click.Path(path_type=Path, exists=True, dir_okay=False)
Command = Callable[..., Any]


USAGE = 64
"""A usage error's exit code (sysexits' EX_USAGE): never 2, which ``plan
--detailed-exitcode`` means "targets planned" (click's own default is 2)."""


class RegplanGroup(click.Group):
    """Turns a ``RegplanError`` into ``Error: <message>`` and its exit code.

    The message is one line whatever it quotes (a name with a newline is
    escaped). An OSError no layer below turned into a RegplanError (a disk that
    fails where nothing else could) is one line and exit 1 as well, not a
    traceback; anything else keeps its traceback: that is a bug to report. A usage
    error (click's, at any level) exits USAGE.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            vars(e)["exit_code"] = USAGE  # this error's own code, over click's class-wide 2
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            vars(e)["exit_code"] = USAGE  # this error's own code, over click's class-wide 2
            raise
        except RegplanError as e:
            click.echo(f"Error: {printable(str(e))}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"Error: {printable(where + (e.strerror or str(e)))}", err=True)
            ctx.exit(1)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def default_signer() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def emit_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def storage_options(f: Command) -> Command:
    """--root and --config; explicit flags beat the environment (README: Finding the storage)."""
    f = click.option(
        "--config",
        type=ExistingFile,
        help="The registry's config.yml: its storage.filesystem.rootdirectory, or its "
        "storage.s3 bucket, endpoint and keys. [env: REGISTRY_CONFIGURATION_PATH]",
    )(f)
    return click.option(
        "--root",
        metavar="PATH|s3://BUCKET/ROOTDIRECTORY",
        help="The registry's rootdirectory (holding docker/) or its docker/registry/v2 "
        "folder, or its S3 bucket and rootdirectory (endpoint, region and credentials "
        "from the standard AWS environment). [env: REGISTRY_DATA_DIR]",
    )(f)


trust_option = click.option(
    "--trust",
    "trust",
    type=ExistingFile,
    multiple=True,
    envvar="REGPLAN_TRUST",
    help="A trusted public key (KEYFILE.pub); repeat for several. [env: REGPLAN_TRUST, "
    "paths separated by the OS path separator]",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON only on stdout.")
signer_option = click.option(
    "--signer",
    metavar="NAME",
    help="Name recorded with the signature [default: the key's name, from KEYFILE.pub].",
)


def registry_options(*, required: bool) -> Callable[[Command], Command]:
    """How to reach the running registry (README: Talking to the running registry)."""

    def add(f: Command) -> Command:
        for option in reversed(
            [
                click.option(
                    "--registry-url",
                    envvar="REGPLAN_REGISTRY_URL",
                    required=required,
                    metavar="URL",
                    help="The running registry, e.g. https://registry.example:5000 "
                    "[env: REGPLAN_REGISTRY_URL]",
                ),
                click.option(
                    "--registry-user",
                    metavar="USER",
                    help="Registry user (password from REGPLAN_REGISTRY_PASSWORD); "
                    "default: ~/.docker/config.json auths.",
                ),
                click.option(
                    "--ca-cert", type=ExistingFile, help="CA bundle for the registry's TLS."
                ),
                click.option("--insecure", is_flag=True, help="Do not verify the registry's TLS."),
            ]
        ):
            f = option(f)
        return f

    return add


def _client(url: str, user: str | None, ca_cert: Path | None, insecure: bool) -> RegistryClient:
    from regplan.regclient import Credentials, RegistryClient  # noqa: PLC0415 (httpx, late)

    credentials = None
    if user is not None:
        credentials = Credentials(
            user=user, password=os.environ.get("REGPLAN_REGISTRY_PASSWORD", "")
        )
    return RegistryClient(url, credentials=credentials, ca_cert=ca_cert, insecure=insecure)


allow_online_option = click.option(
    "--allow-online",
    is_flag=True,
    help="Change the storage even though the registry accepts writes (not recommended).",
)


def _guard(reg: dict[str, Any], allow_online: bool, command: str) -> str | None:
    """Probe the registry before anything changes (when a URL is given); its URL or None."""
    url = reg["registry_url"]
    if url is None:
        return None
    _probe(reg, url, allow_online, command)
    return str(url)


def _probe(reg: dict[str, Any], url: str, allow_online: bool, command: str) -> str:
    """Probe ``url``; refuse (exit 6) when it accepts writes; what it answered."""
    with _client(url, reg["registry_user"], reg["ca_cert"], reg["insecure"]) as client:
        probe = online.guard(client, allow_online=allow_online, command=command)
    log.info("registry %s: %s (%s)", url, probe.mode.value, probe.detail)
    return f"probed {url}: {probe.mode.value} ({probe.detail})"


def _write_guard(
    reg: dict[str, Any], config: Path | None, stopped: bool, allow_online: bool, command: str
) -> tuple[str | None, str]:
    """online.write_guard with this command's ways to reach the registry."""
    found = config or os.environ.get("REGISTRY_CONFIGURATION_PATH")
    settings = running(Path(found), os.environ) if found else None
    return online.write_guard(
        url=reg["registry_url"],
        settings=settings,
        stopped=stopped,
        allow_online=allow_online,
        command=command,
        probe=lambda url: _probe(reg, url, allow_online, command),
    )


registry_stopped_option = click.option(
    "--registry-stopped",
    is_flag=True,
    envvar="REGPLAN_REGISTRY_STOPPED",
    help="The registry is stopped (your word, recorded in the journal and history): needed "
    "when neither --registry-url nor --config says where to probe it. "
    "[env: REGPLAN_REGISTRY_STOPPED=1]",
)


def _advice(config: Path | None, url: str | None) -> str:
    """After apply or rollback: the cache to clear, and the read-only mode to lift (or the
    registry that nothing checked was stopped), from the registry's configuration."""
    found = config or os.environ.get("REGISTRY_CONFIGURATION_PATH")
    settings = running(Path(found), os.environ) if found else None
    mode = online.mode_advice(settings, probed=url is not None)
    return online.cache_advice(settings) + (f"\n{mode}" if mode else "")


def _root_of(quarantine: Path | str) -> str:
    """The storage root a quarantine lies in (``<root>/regplan-state/quarantine/<id>``)."""
    if isinstance(quarantine, Path):
        return str(quarantine.parents[2])
    return quarantine.rsplit("/regplan-state/", 1)[0]


def _check_hint(url: str | None, storage_root: Path | str, plan: Path | None = None) -> str:
    args = ["regplan", "check", "--registry-url", url or "URL", "--root", str(storage_root)]
    args += ["--plan", str(plan)] if plan is not None else []
    return "Then prove every kept image still pulls: " + shlex.join(args)


quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
break_lock_option = click.option(
    "--break-lock",
    is_flag=True,
    help="Object storage: break a lock whose holder is gone (its lease expired, or its "
    "process on this host is dead); a live lock is never broken.",
)


def _root(root: str | None, config: Path | None) -> Path | S3Storage | None:
    """--root, --config, then REGISTRY_DATA_DIR, REGISTRY_CONFIGURATION_PATH and
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY; None when none is given."""
    env = os.environ
    if root is not None:
        return s3.parse_url(root, env) if root.startswith(s3.SCHEME) else Path(root)
    if config is not None:
        return rootdirectory(config, env)
    if env.get("REGISTRY_DATA_DIR"):
        return Path(env["REGISTRY_DATA_DIR"])
    if env.get("REGISTRY_CONFIGURATION_PATH"):
        return rootdirectory(Path(env["REGISTRY_CONFIGURATION_PATH"]), env)
    if env.get(ENV_ROOT):
        return Path(env[ENV_ROOT])
    return None


def _storage(root: str | None, config: Path | None) -> Location:
    found = _root(root, config)
    if found is None:
        raise click.UsageError(
            "no storage given: pass --root or --config, or set REGISTRY_DATA_DIR"
        )
    return location.locate(found)


def _progress(label: str, *, quiet: bool, as_json: bool) -> Reporter:
    return Reporter(label, enabled=False if (quiet or as_json) else None)


@click.group(cls=RegplanGroup)
@click.version_option(__version__, prog_name="regplan")
@click.option("-v", "--verbose", count=True, help="Debug detail on stderr.")
def cli(verbose: int) -> None:
    """Reviewed, reversible cleanup of Docker registry filesystem storage."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@click.argument("keyfile", type=PathArg)
@click.option(
    "--comment",
    default=default_signer,
    help="The key holder's name, written after the public key and recorded with every "
    "signature the key makes (e.g. bob@review). [default: USER@HOST]",
)
def keygen(keyfile: Path, comment: str) -> None:
    """Write an Ed25519 KEYFILE (0600) and KEYFILE.pub."""
    keyid = signing.keygen(keyfile, comment=comment)
    click.echo(f"Wrote {keyfile} (private, 0600) and {keyfile}.pub; key id {keyid}")


RETENTION = ("keep_last", "older_than", "match", "exclude", "keep")


@cli.command()
@storage_options
@click.option(
    "--key",
    type=ExistingFile,
    envvar="REGPLAN_KEY",
    required=True,
    help="Private key that signs the plan. [env: REGPLAN_KEY]",
)
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
@click.option(
    "--keep-last",
    type=click.IntRange(0),
    metavar="N",
    help="Retention: remove tags beyond the N newest.",
)
@click.option("--older-than", metavar="AGE", help="Retention: remove tags older than AGE.")
@click.option("--match", metavar="REGEX", help="Retention: only tags matching REGEX (whole name).")
@click.option("--exclude", metavar="REGEX", help="Retention: never tags matching REGEX.")
@click.option("--keep", metavar="REGEX", help="Retention: never remove tags matching REGEX.")
@click.option(
    "--sort-by",
    type=click.Choice(["pushed", "created"]),
    default="pushed",
    show_default=True,
    help="Retention age: last push, or the image config's created.",
)
@click.option(
    "--allow-empty-repos",
    is_flag=True,
    help="Retention may remove every tag of a repository (and so the repository).",
)
@click.option(
    "--gc", is_flag=True, help="Registry-wide: blobs and layer links nothing kept references."
)
@click.option(
    "--gc-min-age", metavar="AGE", help="With --gc: spare blobs and layer links younger than AGE."
)
@click.option(
    "--uploads-older-than", metavar="AGE", help="Remove upload folders started more than AGE ago."
)
@click.option("--prune", is_flag=True, help="Remove every empty directory (never the roots).")
@click.option(
    "--protect",
    "protect",
    type=click.File("r", encoding="utf-8"),
    multiple=True,
    metavar="FILE",
    help="Images that must survive, whatever else is asked: lines repo:tag, "
    "repo@sha256:... or sha256:... ('-' reads stdin; # comments). Repeatable.",
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
    key: Path,
    output: Path | None,
    signer: str | None,
    as_json: bool,
    quiet: bool,
    detailed_exitcode: bool,
    **sel: Any,
) -> None:
    """Decide what to remove and write a signed plan; changes nothing."""
    selection = _selection(sel)
    storage = _storage(root, config)
    if selection.prune and not location.has_folders(storage):
        click.echo(
            "Note: --prune has nothing to do on object storage: a bucket has no empty folders "
            "(a folder is gone with its last key).",
            err=True,
        )
    t = now()
    private = signing.load_private(key)
    with _progress("scanning paths", quiet=quiet, as_json=as_json) as scanning:
        made = workflow.make_plan(
            storage=storage,
            selection=selection,
            argv=_argv(storage, sel),
            key=private,
            signer=signer or signing.key_name(key, private),
            now=t,
            progress=scanning.count,
        )
    path = output or Path("plans") / f"{workflow.timestamp(t)}.plan.json"
    with made:
        workflow.write_plan(made, path)
    header, counts = made.header, made.counts
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
                "targets": s.targets,
                "bytes": s.bytes,
                "kept": counts["kept"],
                "problems": counts["problems"],
            }
        )
    else:
        click.echo(
            f"Plan {header.plan_id} written to {path}: {s.targets} directories to remove, "
            f"{render.human_bytes(s.bytes)}; {counts['kept']} kept; {counts['problems']} problems."
        )
        click.echo(f"Review it with: regplan show {path}")
    if detailed_exitcode and s.targets:
        ctx.exit(2)


def _selection(sel: dict[str, Any]) -> Selection:
    retention = Retention(
        keep_last=sel["keep_last"],
        older_than=sel["older_than"],
        match=sel["match"],
        exclude=sel["exclude"],
        keep=sel["keep"],
        sort_by=sel["sort_by"],
        allow_empty_repos=sel["allow_empty_repos"],
    )
    if retention.active and not sel["images"]:
        raise click.UsageError("retention rules apply to the tags of --image repositories")
    if sel["gc_min_age"] and not sel["gc"]:
        raise click.UsageError("--gc-min-age goes with --gc")
    for flag in ("older_than", "gc_min_age", "uploads_older_than"):
        if sel[flag] is not None:
            _age(sel[flag], flag)
    protect: tuple[Protect, ...] = ()
    for f in sel["protect"]:
        name = "stdin" if f.name == "<stdin>" else f.name
        try:
            protect += parse_protect(f.read(), name)
        except UnicodeDecodeError:
            raise click.BadParameter(f"{name} is not UTF-8 text", param_hint="--protect") from None
    selection = Selection(
        protect=protect,
        images=tuple(ImageSpec.parse(i) for i in sel["images"]),
        untagged=sel["untagged"],
        prune=sel["prune"],
        retention=retention,
        gc=sel["gc"],
        gc_min_age=sel["gc_min_age"],
        uploads_older_than=sel["uploads_older_than"],
    )
    if selection.empty:
        raise click.UsageError(
            "nothing selected: give --image, --untagged, --gc, --uploads-older-than or --prune"
        )
    return selection


def _age(text: str, flag: str) -> timedelta:
    """An AGE option, or a usage error (exit 64) that names the option."""
    try:
        return parse_age(text)
    except SelectionError as e:
        raise click.BadParameter(str(e), param_hint=f"--{flag.replace('_', '-')}") from None


def _argv(storage: Location, sel: dict[str, Any]) -> list[str]:
    """The request, normalized: what a reviewer needs to repeat it (no key, no output path)."""
    argv = ["regplan", "plan", "--root", str(storage.root)]
    argv += [f"--image={i}" for i in sel["images"]] + [f"--untagged={u}" for u in sel["untagged"]]
    for name in (*RETENTION, "gc_min_age", "uploads_older_than"):
        if sel[name] is not None:
            argv.append(f"--{name.replace('_', '-')}={sel[name]}")
    if sel["sort_by"] != "pushed":
        argv.append(f"--sort-by={sel['sort_by']}")
    argv += [f"--protect={'-' if f.name == '<stdin>' else f.name}" for f in sel["protect"]]
    flags = ("allow_empty_repos", "gc", "prune")
    argv += [f"--{flag.replace('_', '-')}" for flag in flags if sel[flag]]
    return argv


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "html", "json"]), default="text"
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--targets", is_flag=True, help="Text: also list every directory the plan removes.")
@click.option(
    "--trust",
    "trust",
    type=ExistingFile,
    multiple=True,
    envvar="REGPLAN_TRUST",
    help="Check the signatures (in the plan and beside it) against these public keys; "
    "without it every signature is shown as NOT VERIFIED. [env: REGPLAN_TRUST]",
)
def show(plan_file: Path, fmt: str, as_json: bool, targets: bool, trust: tuple[Path, ...]) -> None:
    """Print a plan for review: what it removes and keeps, image by image, and its
    signatures (checked with --trust).

    The plan is read as a stream: a plan of any size is summarized in flat memory."""
    fmt = "json" if as_json else fmt
    with PlanStream(plan_file) as loaded:
        checked = approvals.checked(loaded, signing.trusted_from(trust))
        if fmt == "json":
            for chunk in reviewjson.review_json_chunks(loaded, checked):
                click.echo(chunk, nl=False)
        elif fmt in ("markdown", "html"):
            # the SHA-256 of the very bytes rendered (the stream's first pass took it)
            pinned = render.PlanFile(name=str(plan_file), sha256=loaded.sha256)
            page = (
                ticket.markdown(loaded, pinned, checked)
                if fmt == "markdown"
                else report.html(loaded, pinned, checked)
            )
            click.echo(page, nl=False)
        else:
            for line in render.text_lines(loaded, targets=targets, signatures=checked):
                click.echo(line)


@cli.command("why")
@click.argument("plan_file", type=ExistingFile)
@click.argument("ref")
@json_option
def why_cmd(plan_file: Path, ref: str, as_json: bool) -> None:
    """What PLAN does to REF (repo:tag, repo, repo@sha256:..., sha256:... or a storage
    path): removed (exit 7, with every directory it causes), kept (and the rule that keeps
    it), untouched, or not in the registry when planned (exit 8, with the nearest names)."""
    with PlanStream(plan_file) as loaded:
        try:
            answer = why.why(loaded, ref)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="REF") from None
    if as_json:
        emit_json(render.why_json(answer, loaded.header))
    else:
        click.echo(render.why_text(answer, loaded.header))
    if answer.verdict is why.Verdict.REMOVED:
        click.get_current_context().exit(REMOVED)
    if answer.verdict is why.Verdict.NOT_FOUND:
        click.get_current_context().exit(NOT_FOUND)


REMOVED = 7
"""``why``'s exit code when the plan removes REF: a pipeline can stop on it."""
NOT_FOUND = 8
"""``why``'s exit code when REF was not in the registry when planned (a typo in a
guard must not pass as "untouched")."""


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@trust_option
@storage_options
@click.option("--require-signatures", default=1, show_default=True, type=click.IntRange(1))
@json_option
@quiet_option
def verify(
    plan_file: Path,
    trust: tuple[Path, ...],
    root: str | None,
    config: Path | None,
    require_signatures: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Check signatures against trusted keys and the plan against the tree; changes nothing."""
    with _progress("checking paths", quiet=quiet, as_json=as_json) as scanning:
        v = workflow.load_verified(
            plan_file,
            trusted=signing.trusted_from(trust),
            root=_root(root, config),
            required=require_signatures,
            progress=scanning.count,
        )
    signers = [k.keyid for k in v.signers]
    if as_json:
        emit_json(
            {
                "plan_id": v.header.plan_id,
                "valid": True,
                "signers": signers,
                "root": str(v.storage.root),
                "fresh": True,
            }
        )
    else:
        click.echo(
            f"OK: plan {v.header.plan_id} is signed by {len(signers)} trusted key(s) "
            f"({', '.join(signers)}) and matches {v.storage.root}"
        )


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@click.option(
    "--key",
    type=ExistingFile,
    envvar="REGPLAN_KEY",
    required=True,
    help="The reviewer's private key. [env: REGPLAN_KEY]",
)
@signer_option
@trust_option
def approve(plan_file: Path, key: Path, signer: str | None, trust: tuple[Path, ...]) -> None:
    """Co-sign PLAN as approver: check every signature it has against --trust, then write
    the approval beside it (PLAN.approval-KEY.sig); PLAN's bytes never change."""
    private = signing.load_private(key)
    header, written = workflow.approve(
        plan_file,
        key=private,
        signer=signer or signing.key_name(key, private),
        now=now(),
        trusted=signing.trusted_from(trust),
    )
    click.echo(f"Approved plan {header.plan_id}: wrote {written} (the plan file is unchanged)")


@cli.command("apply")
@click.argument("plan_file", type=ExistingFile)
@trust_option
@storage_options
@click.option(
    "--require-signatures",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Distinct trusted keys that must have signed.",
)
@registry_options(required=False)
@registry_stopped_option
@allow_online_option
@break_lock_option
@json_option
@quiet_option
def apply_cmd(
    plan_file: Path,
    trust: tuple[Path, ...],
    root: str | None,
    config: Path | None,
    require_signatures: int,
    registry_stopped: bool,
    allow_online: bool,
    break_lock: bool,
    as_json: bool,
    quiet: bool,
    **reg: Any,
) -> None:
    """Verify PLAN and move its targets into quarantine (re-run to finish an interrupted apply)."""
    url, said = _write_guard(
        reg, config, registry_stopped, allow_online, f"regplan apply {plan_file}"
    )
    with (
        _progress("checking paths", quiet=quiet, as_json=as_json) as scanning,
        _progress("moving", quiet=quiet, as_json=as_json) as moving,
    ):
        result = apply.apply_plan(
            plan_path=plan_file,
            trusted=signing.trusted_from(trust),
            root=_root(root, config),
            required=require_signatures,
            now=now(),
            progress=moving.fraction,
            scan_progress=scanning.count,
            break_lock=break_lock,
            registry=said,
        )
    if as_json:
        emit_json(render.result_json(result))
    else:
        click.echo(render.applied(result, _advice(config, url)))
        click.echo(_check_hint(url, _root_of(result.quarantine), plan_file))
    if not result.fingerprint_ok:
        raise ApplyError(
            f"apply {result.apply_id} finished, but the tree differs from the plan's prediction "
            f"({'; '.join(result.changed)}): something wrote meanwhile; check, then undo with: "
            f"regplan rollback {result.apply_id}"
        )


@cli.command()
@click.argument("apply_id")
@storage_options
@registry_options(required=False)
@registry_stopped_option
@allow_online_option
@break_lock_option
@json_option
@quiet_option
def rollback(
    apply_id: str,
    root: str | None,
    config: Path | None,
    registry_stopped: bool,
    allow_online: bool,
    break_lock: bool,
    as_json: bool,
    quiet: bool,
    **reg: Any,
) -> None:
    """Put back everything APPLY_ID moved, byte for byte (also after an interrupted apply)."""
    storage = _storage(root, config)
    url, said = _write_guard(
        reg, config, registry_stopped, allow_online, f"regplan rollback {apply_id}"
    )
    with (
        _progress("moving back", quiet=quiet, as_json=as_json) as moving,
        _progress("checking paths", quiet=quiet, as_json=as_json) as scanning,
    ):
        result = apply.rollback(
            storage=storage,
            apply_id=apply_id,
            now=now(),
            progress=moving.fraction,
            scan_progress=scanning.count,
            break_lock=break_lock,
            registry=said,
        )
    if as_json:
        emit_json(render.result_json(result))
    else:
        click.echo(render.rolled_back(result, _advice(config, url)))
        click.echo(_check_hint(url, storage.root))
    if not result.fingerprint_ok:
        raise ApplyError(
            f"rolled back {apply_id}, but the tree differs from the plan's before "
            f"({'; '.join(result.changed)}): something else changed it meanwhile"
        )


@cli.command()
@click.argument("apply_id", required=False)
@click.option("--older-than", metavar="AGE", help="Every applied one older than AGE (e.g. 7d).")
@click.option(
    "--include-unverified",
    is_flag=True,
    help="With --older-than: also applies whose final check found the tree other than "
    "planned (see history); by default those are left for a person to look at.",
)
@storage_options
@registry_options(required=False)
@allow_online_option
@break_lock_option
@json_option
@quiet_option
def purge(
    apply_id: str | None,
    older_than: str | None,
    include_unverified: bool,
    root: str | None,
    config: Path | None,
    allow_online: bool,
    break_lock: bool,
    as_json: bool,
    quiet: bool,
    **reg: Any,
) -> None:
    """Delete the quarantine of APPLY_ID (or of every applied one older than AGE) for good."""
    if (apply_id is None) == (older_than is None):
        raise click.UsageError("give an APPLY_ID or --older-than AGE")
    age = _age(older_than, "older_than") if older_than is not None else None
    _guard(reg, allow_online, "regplan purge")
    with _progress("deleting", quiet=quiet, as_json=as_json) as deleting:
        done = apply.purge(
            storage=_storage(root, config),
            apply_id=apply_id,
            older_than=age,
            now=now(),
            progress=deleting.fraction,
            include_unverified=include_unverified,
            break_lock=break_lock,
        )
    if as_json:
        emit_json([r.apply_id for r in done])
    else:
        click.echo(render.purged(done))


@cli.command("check")
@registry_options(required=True)
@storage_options
@click.option(
    "--plan",
    "plan_file",
    type=ExistingFile,
    help="Also prove that what this plan removed is no longer served (a stale cache is not).",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="GLOB",
    help="Only these repositories (REPO or REPO:TAG globs); default: every tag in the storage.",
)
@json_option
@quiet_option
def check_cmd(
    root: str | None,
    config: Path | None,
    plan_file: Path | None,
    images: tuple[str, ...],
    as_json: bool,
    quiet: bool,
    **reg: Any,
) -> None:
    """Prove through the registry's API that every kept image is whole (changes nothing)."""
    from regplan import check  # noqa: PLC0415 (httpx: imported when a registry is asked)

    storage = _storage(root, config)
    selected = check.images_in(storage, tuple(ImageSpec.parse(i) for i in images))
    removed: list[check.Gone] = []
    state = None
    if plan_file:
        with PlanStream(plan_file) as loaded:
            state = check.plan_state(loaded.header.plan_id, apply.records(storage))
            removed = check.removed_by(loaded) if state.applied else []
    with (
        _client(
            reg["registry_url"], reg["registry_user"], reg["ca_cert"], reg["insecure"]
        ) as client,
        _progress("checking images", quiet=quiet, as_json=as_json) as checking,
    ):
        report = check.check(client, selected, removed=removed, progress=checking.count)
    if state is not None:
        report = attrs.evolve(report, plan_note=state.note)
    if as_json:
        emit_json(render.check_json(report, client.url))
    else:
        click.echo(render.check_report(report, client.url))
    if not report.ok:
        raise CheckFailed(check.verdict(report, apply.records(storage)))


@cli.command()
@storage_options
@json_option
def history(root: str | None, config: Path | None, as_json: bool) -> None:
    """List the applies recorded in the storage, oldest first."""
    found = apply.records(_storage(root, config))
    if as_json:
        emit_json([apply.record_json(r) for r in found])
    else:
        click.echo(render.history(found), nl=False)


@cli.command()
@click.argument("directory", type=PathArg, required=False)
def demo(directory: Path | None) -> None:
    """Build a sample registry and walk through the whole cycle on it."""
    walkthrough.run(directory, echo=click.echo, now=now())


def main() -> None:
    # No cyclic garbage collection: a command's millions of objects (digests, paths,
    # targets) hold no cycles and are freed by reference counting, while every full
    # collection walks them all (10.3 s of a plan's main process at a million files,
    # 1.5 s at a quarter of that). Measured side by side at a million files: user CPU
    # 85.5 -> 80.8 s, peak RSS unchanged (README, Performance).
    gc.disable()
    # `regplan show PLAN | head`: a closed pipe ends the command quietly, as it does
    # cat's, instead of "Error: Broken pipe".
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    cli(prog_name="regplan")
