"""Reads a Tandem bundle's identity (version, compatible) from its manifest.

Pure: no gooseBit imports, so it is testable without a server. The bundle
format (docs/bundle-format.md) is a ustar archive whose first member is
`manifest.json` (at most 1 MiB).
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from typing import BinaryIO

MANIFEST_MEMBER = "manifest.json"
MANIFEST_LIMIT = 1 << 20
USTAR_MAGIC_OFFSET = 257


class NotABundle(ValueError):
    """The file is not a Tandem bundle (let gooseBit's own parsers try)."""


class BadBundle(ValueError):
    """The file claims to be a Tandem bundle but its manifest is unusable."""


@dataclass(frozen=True)
class BundleInfo:
    version: str
    compatible: str


def looks_like_bundle(head: bytes) -> bool:
    """Whether the first 512 bytes are a ustar header for `manifest.json`."""
    if len(head) < 512 or head[USTAR_MAGIC_OFFSET : USTAR_MAGIC_OFFSET + 5] != b"ustar":
        return False
    name = head[:100].split(b"\0", 1)[0]
    return name == MANIFEST_MEMBER.encode()


def read_info(f: BinaryIO) -> BundleInfo:
    """Version and compatible of the bundle in `f` (positioned at its start)."""
    head = f.read(512)
    if not looks_like_bundle(head):
        raise NotABundle("first member is not a ustar manifest.json")
    f.seek(0)
    try:
        with tarfile.open(fileobj=f, mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST_MEMBER or not member.isreg():
                raise BadBundle("first member is not a regular manifest.json")
            if member.size > MANIFEST_LIMIT:
                raise BadBundle(f"manifest.json is {member.size} bytes, over the 1 MiB limit")
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
    except tarfile.TarError as e:
        raise BadBundle(f"not a readable tar archive: {e}") from e
    return parse_manifest(data)


def parse_manifest(data: bytes) -> BundleInfo:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadBundle(f"manifest.json is not JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise BadBundle("manifest.json is not a JSON object")
    if manifest.get("format") != 1:
        raise BadBundle(f"bundle format {manifest.get('format')!r} is not supported (want 1)")
    version, compatible = manifest.get("version"), manifest.get("compatible")
    if not isinstance(version, str) or not version:
        raise BadBundle("manifest has no version")
    if not isinstance(compatible, str) or not compatible:
        raise BadBundle("manifest has no compatible")
    return BundleInfo(version=version, compatible=compatible)
