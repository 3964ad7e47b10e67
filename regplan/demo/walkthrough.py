"""``regplan demo``: a guided run on a sample registry built by :mod:`regplan.demo.samples`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from regplan import apply, workflow
from regplan.decide.selection import ImageSpec, Selection
from regplan.demo.samples import build_demo
from regplan.errors import RegplanError
from regplan.plans import approvals, signing
from regplan.plans.planfile import PlanStream
from regplan.registry.online import STOPPED, cache_advice
from regplan.storage.fs.fsstorage import FsStorage
from regplan.views import render, results, ticket

Echo = Callable[[str], None]


def _quote(echo: Echo, text: str) -> None:
    """Show a command's output indented under its step."""
    for line in text.splitlines():
        echo("   " + line)


def _review(plan_path: Path, trusted: list[signing.TrustedKey], step: str, echo: Echo) -> None:
    """What ``regplan show`` prints of the plan file written, and its Markdown beside it."""
    echo(step)
    md = plan_path.with_suffix(".md")
    with PlanStream(plan_path) as loaded:
        checked = approvals.checked(loaded, trusted)
        _quote(echo, render.text(loaded, signatures=checked))
        pinned = render.PlanFile(name=str(plan_path), sha256=loaded.sha256)
        md.write_text(ticket.markdown(loaded, pinned, checked))
    echo(f"   (regplan show {plan_path} --format markdown, for a change ticket: {md})")
    echo("")


def _plan(root: Path, key: Path, plan_path: Path, now: datetime, echo: Echo) -> None:
    """Step 3: plan team/app:v1 and every untagged manifest under team/, pruning."""
    selection = Selection(
        images=(ImageSpec.parse("team/app:v1"),), untagged=("team/*",), prune=True
    )
    argv = [
        "regplan",
        "plan",
        "--root",
        str(root),
        "--image=team/app:v1",
        "--untagged=team/*",
        "--prune",
    ]
    with workflow.make_plan(
        storage=FsStorage.locate(root),
        selection=selection,
        argv=argv,
        key=signing.load_private(key),
        signer="demo-planner",
        now=now,
    ) as plan:
        workflow.write_plan(plan, plan_path)
    echo(f"3. {' '.join(argv)} -o {plan_path}")


def run(directory: Path | None, *, echo: Echo, now: datetime) -> Path | None:
    """The tour in ``directory`` (left there to explore), or, without one, in a temporary
    folder deleted at its end, however it ends; the directory kept, if any."""
    if directory is not None:
        _tour(directory, echo=echo, now=now)
        echo(f"Everything is under {directory}.")
        return directory
    base = Path(tempfile.mkdtemp(prefix="regplan-demo-"))
    try:
        _tour(base, echo=echo, now=now)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    echo(
        f"{base} is deleted; to keep a sample registry to try the commands on, run "
        "regplan demo DIRECTORY."
    )
    return None


def _tour(base: Path, *, echo: Echo, now: datetime) -> None:
    root = base / "registry"
    if os.path.lexists(root):
        raise RegplanError(f"{root} exists; give an empty or new directory")
    build_demo(root)
    storage = FsStorage.locate(root)
    echo(f"1. A sample registry was written to {root}: team/app (v1, v2, latest re-pushed")
    echo("   three times), team/tool (a multi-arch index), team/app/cache (nested inside")
    echo(
        "   team/app), old/repo (shares team/app:v1's layers), team/signed (v1 and v2 with\n"
        "   cosign signatures and an attestation, pushed as sha256-<digest>.sig/.att tags)."
    )

    key = base / "keys" / "planner.key"
    signing.keygen(key, comment="demo-planner")
    echo(f"2. A signing key: regplan keygen {key}")

    plan_path = base / "plans" / "demo.plan.json"
    _plan(root, key, plan_path, now, echo)
    echo("   Nothing is removed yet. v1's layers stay because old/repo:2019 uses them;")
    echo("   team/tool's untagged index children stay because the tagged index needs them.")
    echo("")
    trusted = [signing.load_trusted(Path(f"{key}.pub"))]
    _review(plan_path, trusted, f"4. regplan show {plan_path} --trust {key}.pub", echo)
    workflow.load_verified(plan_path, trusted=trusted, root=root)
    echo(f"5. regplan verify {plan_path} --trust {key}.pub: signature valid, tree unchanged.")
    echo("")

    def apply_once(step: str) -> str:
        result = apply.apply_plan(
            plan_path=plan_path,
            trusted=trusted,
            root=root,
            required=1,
            now=now,
            registry=STOPPED,
        )
        echo(f"{step}. regplan apply {plan_path} --trust {key}.pub --registry-stopped")
        echo("   No registry serves this sample storage, so the demo says so; on yours, give")
        echo("   --registry-url or the registry's --config and regplan probes that it cannot")
        echo("   write. It checks the signature and that the tree is unchanged, then moves each")
        echo("   target into a quarantine under a journal; re-running it after a crash finishes.")
        _quote(echo, results.applied(result, cache_advice(None)))
        return result.apply_id

    first = apply_once("6")
    echo(f"7. regplan history --root {root}")
    _quote(echo, results.history(apply.records(storage)))
    back = apply.rollback(storage=storage, apply_id=first, now=now, registry=STOPPED)
    echo(f"8. regplan rollback {first} --root {root} --registry-stopped")
    echo("   Everything moves back, pruned folders are recreated: byte for byte as before.")
    _quote(echo, results.rolled_back(back, cache_advice(None)))
    second = apply_once("9")
    done = apply.purge(storage=storage, apply_id=second, older_than=None, now=now)
    echo(f"10. regplan purge {second} --root {root}")
    echo("   The quarantine is deleted for good; the plan and journal stay as the record.")
    _quote(echo, results.purged(done))
