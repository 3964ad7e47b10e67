"""A registry on a filesystem: the rootdirectory that holds ``docker/registry/v2``."""

from __future__ import annotations

from pathlib import Path

import attrs

from regplan.errors import StorageError
from regplan.scan.layout import STATE_DIR, V2


@attrs.frozen
class FsStorage:
    """Where a registry keeps its data: ``root`` holds ``docker/``; ``v2`` the tree."""

    root: Path
    v2: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @classmethod
    def locate(cls, path: Path) -> FsStorage:
        """Accept the registry's ``rootdirectory`` or its ``docker/registry/v2`` folder."""
        path = path.expanduser().absolute()
        if not path.is_dir():
            raise StorageError(f"{path}: no such directory (expected the registry's rootdirectory)")
        if path.parts[-3:] == V2:
            return cls(root=path.parents[2], v2=path)._confined()
        v2 = path.joinpath(*V2)
        if v2.is_dir():
            return cls(root=path, v2=v2)._confined()
        raise StorageError(
            f"{path} is not registry storage: expected {Path(*V2)} inside it "
            "(the rootdirectory of the filesystem driver) or the v2 folder itself"
        )

    def _confined(self) -> FsStorage:
        """docker/, registry/ and v2/ must be real folders of the root: a link there
        would take every move, rename and chmod out of the rootdirectory."""
        for i in range(1, len(V2) + 1):
            folder = self.root.joinpath(*V2[:i])
            if folder.is_symlink():
                raise StorageError(
                    f"{folder} is a symlink; regplan works only inside the rootdirectory: "
                    "give --root the real folder that holds docker/registry/v2"
                )
        return self
