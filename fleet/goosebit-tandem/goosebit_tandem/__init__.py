"""gooseBit plugin: Tandem bundles as software.

gooseBit (0.2.x) decides what a software file is in
`goosebit.updates.swdesc.parse_file`, which knows SWUpdate and RAUC only;
its plugin hooks (`update_source_hook`, `config_data_hook`) add update
*sources* and config callbacks, not file formats. So this plugin, loaded
through gooseBit's own plugin mechanism (entry point `goosebit.plugins`,
enabled by `plugins: [tandem]`), wraps that parser: a Tandem bundle is
described from its manifest, anything else goes to gooseBit's parsers as
before. Upload, storage, assignment, rollouts and the DDI deployment are
gooseBit's own, unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import semver
from anyio import Path, open_file, to_thread

from goosebit.db.models import SoftwareImageFormat
from goosebit.schema.plugins import PluginSchema
from goosebit.updates import swdesc
from goosebit.updates.swdesc.func import sha1_hash_file

from .manifest import BadBundle, NotABundle, read_info

logger = logging.getLogger(__name__)

_gooseBit_parse_file = swdesc.parse_file


def _read_info_sync(path: str):  # type: ignore[no-untyped-def]
    with open(path, "rb") as f:
        return read_info(f)


async def parse_file(file: Path) -> dict[str, Any] | None:
    """gooseBit's parse_file, knowing Tandem bundles too."""
    try:
        info = await to_thread.run_sync(_read_info_sync, str(file))
    except NotABundle:
        return await _gooseBit_parse_file(file)
    except BadBundle as e:
        logger.warning(f"Tandem bundle refused, file={file}, error={e}")
        raise ValueError(f"Tandem bundle refused: {e}") from e
    # gooseBit orders versions with semver; refuse what it cannot order.
    semver.Version.parse(info.version)
    async with await open_file(file, "rb") as f:
        sha1 = await sha1_hash_file(f)
    stat = await file.stat()
    logger.info(f"Tandem bundle, version={info.version}, compatible={info.compatible}")
    return {
        "version": info.version,
        "compatibility": [{"hw_model": info.compatible, "hw_revision": "default"}],
        "size": stat.st_size,
        "hash": sha1,
        # gooseBit's format column knows SWU and RAUC only; the device
        # recognises the bundle itself, the column is informational.
        "image_format": SoftwareImageFormat.SWU,
    }


swdesc.parse_file = parse_file  # type: ignore[assignment]

config = PluginSchema(name="tandem")
