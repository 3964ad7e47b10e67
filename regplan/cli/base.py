"""The command group and what its commands share: exit codes, options, where the
storage is, the write guard, progress."""

from __future__ import annotations

import getpass
import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from regplan import __version__
from regplan.cli.progress import Reporter
from regplan.decide.ages import parse_age
from regplan.errors import RegplanError, SelectionError
from regplan.plans import keys
from regplan.plans.signing import SigningKey
from regplan.plans.sshkeys import PASSPHRASE_ENV
from regplan.progress import Progress
from regplan.registry import online
from regplan.registry.guard import Holding
from regplan.scan.layout import printable
from regplan.storage import location
from regplan.storage.clouds import Found, parse_root
from regplan.storage.config import ENV_ROOT, Running, rootdirectory, running
from regplan.storage.location import Location

if TYPE_CHECKING:  # httpx, under regclient, is 17 MiB: imported only to ask a registry
    from regplan.registry.regclient import RegistryClient

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
        "storage.s3, storage.azure or storage.gcs container, endpoint and credentials. "
        "[env: REGISTRY_CONFIGURATION_PATH]",
    )(f)
    return click.option(
        "--root",
        metavar="PATH|s3://BUCKET/ROOT|az://CONTAINER/ROOT|gs://BUCKET/ROOT",
        help="The registry's rootdirectory (holding docker/) or its docker/registry/v2 "
        "folder, or its object store's container and rootdirectory (endpoint and "
        "credentials from each cloud's standard environment: README, Object storage). "
        "[env: REGISTRY_DATA_DIR]",
    )(f)


trust_option = click.option(
    "--trust",
    "trust",
    type=ExistingFile,
    multiple=True,
    envvar="REGPLAN_TRUST",
    help="Trusted keys: an OpenSSH allowed_signers file, an OpenSSH or regplan public key "
    "(KEY.pub); repeat for several. [env: REGPLAN_TRUST, paths separated by the OS path "
    "separator]",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON only on stdout.")


def key_option(what: str) -> Callable[[Command], Command]:
    """``--key``: an SSH key (a private key file, or ssh-agent's key named by its public
    key file or ``SHA256:`` fingerprint) or a regplan key (plans/keys.py)."""
    return click.option(
        "--key",
        metavar="KEYFILE|KEY.pub|SHA256:FINGERPRINT",
        envvar="REGPLAN_KEY",
        required=True,
        help=f"{what}: an OpenSSH private key (encrypted: {PASSPHRASE_ENV} or a prompt), "
        "a public key whose private half ssh-agent holds, the agent key's SHA256: "
        "fingerprint, or a regplan key. [env: REGPLAN_KEY]",
    )


def load_key(spec: str, signer: str | None) -> tuple[SigningKey, str]:
    """The key --key names and the name its signatures record (--signer, else the key's)."""
    key = keys.load(spec, _passphrase)
    return key, signer or keys.signer_name(spec, key, default_signer)


def _passphrase() -> str | None:
    """An encrypted key's passphrase: the environment's, else asked on a terminal
    (never echoed); None when neither can give it."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return None
    return str(click.prompt("Passphrase for the key", hide_input=True, err=True))


signer_option = click.option(
    "--signer",
    metavar="NAME",
    help="Name recorded with the signature [default: the key's name, from KEYFILE.pub].",
)


def registry_options(*, required: bool, replicas: bool = False) -> Callable[[Command], Command]:
    """How to reach the running registry (README: Talking to the running registry);
    ``replicas``: --registry-url may be repeated (the write guard probes each)."""
    each = (
        "; repeat it for each replica behind a load balancer: each is probed "
        "[env: REGPLAN_REGISTRY_URL, URLs separated by spaces]"
        if replicas
        else " [env: REGPLAN_REGISTRY_URL]"
    )

    def add(f: Command) -> Command:
        for option in reversed(
            [
                click.option(
                    "--registry-url",
                    envvar="REGPLAN_REGISTRY_URL",
                    required=required,
                    multiple=replicas,
                    metavar="URL",
                    help=f"The running registry, e.g. https://registry.example:5000{each}",
                ),
                click.option(
                    "--registry-user",
                    metavar="USER",
                    help="Registry user (password from REGPLAN_REGISTRY_PASSWORD); "
                    "default: as docker finds them in ~/.docker/config.json "
                    "(credHelpers, credsStore, auths; $DOCKER_CONFIG).",
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


def registry_client(
    url: str, user: str | None, ca_cert: Path | None, insecure: bool
) -> RegistryClient:
    from regplan.registry.regclient import Credentials, RegistryClient  # noqa: PLC0415 (httpx, late)

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


def guard(
    reg: dict[str, Any], stopped: bool, allow_online: bool, command: str, storage: Location
) -> None:
    """purge's guard: each --registry-url given is probed (none: nothing is asked)."""
    if reg["registry_url"]:
        write_guard(reg, None, stopped, allow_online, command, storage)


def write_guard(
    reg: dict[str, Any],
    config: Path | None,
    stopped: bool,
    allow_online: bool,
    command: str,
    storage: Location,
    progress: Progress | None = None,
) -> str:
    """online.write_guard with this command's ways to reach the registry, and the
    storage it must be shown to serve (read only if a read-only answer needs it); what
    to record of it."""

    def open_url(url: str) -> RegistryClient:
        return registry_client(url, reg["registry_user"], reg["ca_cert"], reg["insecure"])

    def holding() -> Holding:
        inventory = location.read(storage, progress=progress)
        return Holding.of(inventory, storage=str(storage.root))

    return online.write_guard(
        urls=reg["registry_url"],
        settings=settings_of(config),
        stopped=stopped,
        allow_online=allow_online,
        command=command,
        open_url=open_url,
        holding=holding,
    )


def probed_url(reg: dict[str, Any], config: Path | None) -> str | None:
    """The URL the write guard probes first (what the printed `check` names)."""
    if reg["registry_url"]:
        return str(reg["registry_url"][0])
    settings = settings_of(config)
    return settings.url if settings is not None else None


registry_stopped_option = click.option(
    "--registry-stopped",
    is_flag=True,
    envvar="REGPLAN_REGISTRY_STOPPED",
    help="The registry is stopped (your word, recorded in the journal and history): needed "
    "when neither --registry-url nor --config says where to probe it, and when nothing "
    "answers where they say (no answer proves nothing by itself: a mistyped port looks "
    "the same). A registry that answers is judged by its answer whatever this says. "
    "[env: REGPLAN_REGISTRY_STOPPED=1]",
)


def advice(config: Path | None, url: str | None) -> str:
    """After apply or rollback: the cache to clear, and the read-only mode to lift (or the
    registry that nothing checked was stopped), from the registry's configuration."""
    settings = settings_of(config)
    mode = online.mode_advice(settings, probed=url is not None)
    return online.cache_advice(settings) + (f"\n{mode}" if mode else "")


def settings_of(config: Path | None) -> Running | None:
    """How the registry runs, from its configuration (``--config`` or
    ``REGISTRY_CONFIGURATION_PATH``), when there is one."""
    found = config or os.environ.get("REGISTRY_CONFIGURATION_PATH")
    return running(Path(found), os.environ) if found else None


def root_of(quarantine: Path | str) -> str:
    """The storage root a quarantine lies in (``<root>/regplan-state/quarantine/<id>``)."""
    if isinstance(quarantine, Path):
        return str(quarantine.parents[2])
    return quarantine.rsplit("/regplan-state/", 1)[0]


def where_args(config: Path | None, storage_root: Path | str) -> list[str]:
    """The storage options a printed next command needs: the ``--config`` the operator
    gave (it holds what a bucket's root does not: credentials, the endpoint), else
    ``--root``."""
    return ["--config", str(config)] if config is not None else ["--root", str(storage_root)]


def check_hint(
    url: str | None, storage_root: Path | str, plan: Path | None = None, config: Path | None = None
) -> str:
    args = ["regplan", "check", "--registry-url", url or "URL", *where_args(config, storage_root)]
    args += ["--plan", str(plan)] if plan is not None else []
    return "Then prove every kept image still pulls: " + shlex.join(args)


quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress on stderr and no summary on stdout: only what failed, and errors, "
    "are printed (the exit code says the rest).",
)
break_lock_option = click.option(
    "--break-lock",
    is_flag=True,
    help="Object storage: break a lock whose holder is gone (its lease expired, or its "
    "process on this host is dead); a live lock is never broken.",
)


def root_arg(root: str | None, config: Path | None) -> Found | None:
    """--root, --config, then REGISTRY_DATA_DIR, REGISTRY_CONFIGURATION_PATH and
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY; None when none is given."""
    env = os.environ
    if root is not None:
        return parse_root(root, env)
    if config is not None:
        return rootdirectory(config, env)
    if env.get("REGISTRY_DATA_DIR"):
        return Path(env["REGISTRY_DATA_DIR"])
    if env.get("REGISTRY_CONFIGURATION_PATH"):
        return rootdirectory(Path(env["REGISTRY_CONFIGURATION_PATH"]), env)
    if env.get(ENV_ROOT):
        return Path(env[ENV_ROOT])
    return None


def storage_of(root: str | None, config: Path | None) -> Location:
    found = root_arg(root, config)
    if found is None:
        raise click.UsageError(
            "no storage given: pass --root or --config, or set REGISTRY_DATA_DIR"
        )
    return location.locate(found)


def progress_of(label: str, *, quiet: bool, as_json: bool) -> Reporter:
    return Reporter(label, enabled=False if (quiet or as_json) else None)


@click.group(cls=RegplanGroup)
@click.version_option(__version__, prog_name="regplan")
@click.option("-v", "--verbose", count=True, help="Debug detail on stderr.")
def cli(verbose: int) -> None:
    """Reviewed, reversible cleanup of a Docker registry's storage: a filesystem, S3,
    Azure Blob or Google Cloud Storage."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def age_of(text: str, flag: str) -> timedelta:
    """An AGE option, or a usage error (exit 64) that names the option."""
    try:
        return parse_age(text)
    except SelectionError as e:
        raise click.BadParameter(str(e), param_hint=f"--{flag.replace('_', '-')}") from None
