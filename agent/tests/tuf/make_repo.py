#!/usr/bin/env python3
"""Makes TUF repositories with python-tuf for agent/tests/tuf_interop.rs.

Usage: make_repo.py OUT

Writes, under OUT, one directory per moment of the repository's life,
each a complete tree the test serves as it is (metadata/ and targets/):

  v1/       root v1, consistent snapshots, top-level targets with
            os-1.0.tnd (custom metadata), a delegated role "stable"
            (paths stable/*) listing stable/os-1.1.tnd and also rogue.tnd,
            a path it is not trusted for
  v2/       root rotated to v2 (a new root key; signed by the old and the
            new), a new timestamp, snapshot and targets with os-1.2.tnd
  tampered/ v2 with the bytes of os-1.2.tnd replaced
  replay/   v2 with v1's timestamp.json served again
  expired/  v2 with a timestamp v3 that expired a day ago

and OUT/root.json, the root the client starts from (v1), and
OUT/targets.json: {target path: content hex} of the genuine targets.
"""

import copy
import json
import os
import shutil
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

NOW = datetime.now(timezone.utc).replace(microsecond=0)
LATER = NOW + timedelta(days=30)


class Repo:
    def __init__(self) -> None:
        self.signers = {n: CryptoSigner.generate_ed25519() for n in
                        ("root", "timestamp", "snapshot", "targets", "stable")}
        root = Root(expires=LATER, consistent_snapshot=True)
        for name in ("root", "timestamp", "snapshot", "targets"):
            root.add_key(self.signers[name].public_key, name)
        self.root = Metadata(root)
        self.targets = Metadata(Targets(expires=LATER))
        stable_key = self.signers["stable"].public_key
        self.targets.signed.delegations = Delegations(
            keys={stable_key.keyid: stable_key},
            roles={"stable": DelegatedRole("stable", [stable_key.keyid], 1, False,
                                           paths=["stable/*"])},
        )
        self.stable = Metadata(Targets(expires=LATER))
        self.snapshot = Metadata(Snapshot(expires=LATER))
        self.timestamp = Metadata(Timestamp(expires=LATER))
        # path in the served tree -> bytes
        self.files: dict[str, bytes] = {}
        self.contents: dict[str, str] = {}

    def add_target(self, role: Metadata, path: str, data: bytes, custom: dict) -> None:
        tf = TargetFile.from_data(path, data, ["sha256"])
        tf.unrecognized_fields["custom"] = custom
        role.signed.targets[path] = tf
        dirname, sep, base = path.rpartition("/")
        self.files[f"targets/{dirname}{sep}{tf.hashes['sha256']}.{base}"] = data
        self.contents[path] = data.hex()

    def sign(self, md: Metadata, *signers: CryptoSigner) -> bytes:
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)
        return md.to_bytes(JSONSerializer(compact=False))

    def publish_root(self, *extra: CryptoSigner) -> None:
        data = self.sign(self.root, self.signers["root"], *extra)
        self.files[f"metadata/{self.root.signed.version}.root.json"] = data

    def publish(self, bump_targets: bool = True) -> None:
        """Signs targets (if bumped), stable, snapshot and timestamp."""
        if bump_targets:
            self.files[f"metadata/{self.stable.signed.version}.stable.json"] = \
                self.sign(self.stable, self.signers["stable"])
            self.files[f"metadata/{self.targets.signed.version}.targets.json"] = \
                self.sign(self.targets, self.signers["targets"])
        snap = self.snapshot.signed
        snap.meta["targets.json"] = MetaFile(self.targets.signed.version)
        snap.meta["stable.json"] = MetaFile(self.stable.signed.version)
        snap_bytes = self.sign(self.snapshot, self.signers["snapshot"])
        self.files[f"metadata/{snap.version}.snapshot.json"] = snap_bytes
        self.timestamp.signed.snapshot_meta = MetaFile(snap.version)
        self.files["metadata/timestamp.json"] = self.sign(self.timestamp, self.signers["timestamp"])

    def write(self, out: str, name: str, files: dict[str, bytes] | None = None) -> None:
        for path, data in (files or self.files).items():
            full = os.path.join(out, name, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)


def main() -> None:
    out = sys.argv[1]
    shutil.rmtree(out, ignore_errors=True)
    repo = Repo()

    # v1
    repo.add_target(repo.targets, "os-1.0.tnd", b"os 1.0 bundle",
                    {"tandem": {"version": "1.0.0", "compatible": "acme-gw"}})
    repo.add_target(repo.stable, "stable/os-1.1.tnd", b"os 1.1 bundle",
                    {"tandem": {"version": "1.1.0", "compatible": "acme-gw"}})
    repo.add_target(repo.stable, "rogue.tnd", b"not stable's to sign", {})
    repo.publish_root()
    repo.publish()
    repo.write(out, "v1")
    v1_timestamp = repo.files["metadata/timestamp.json"]
    with open(os.path.join(out, "root.json"), "wb") as f:
        f.write(repo.files["metadata/1.root.json"])

    # v2: rotate the root key, publish a new target.
    old_root = repo.signers["root"]
    new_root = CryptoSigner.generate_ed25519()
    root = repo.root.signed
    root.revoke_key(old_root.public_key.keyid, "root")
    root.add_key(new_root.public_key, "root")
    root.version += 1
    repo.signers["root"] = new_root
    repo.publish_root(old_root)
    repo.targets.signed.version += 1
    repo.add_target(repo.targets, "os-1.2.tnd", b"os 1.2 bundle",
                    {"tandem": {"version": "1.2.0", "compatible": "acme-gw"}})
    repo.snapshot.signed.version += 1
    repo.timestamp.signed.version += 1
    repo.publish()
    repo.write(out, "v2")

    # tampered: os-1.2.tnd's bytes replaced on the mirror.
    tampered = dict(repo.files)
    for path in tampered:
        if path.endswith(".os-1.2.tnd"):
            tampered[path] = b"os 1.2 bundl\x00"  # same length: the hash must catch it
    repo.write(out, "tampered", tampered)

    # replay: the old timestamp served again.
    replay = dict(repo.files)
    replay["metadata/timestamp.json"] = v1_timestamp
    repo.write(out, "replay", replay)

    # expired: a new timestamp whose expiry has passed.
    expired = copy.deepcopy(repo.timestamp)
    expired.signed.version += 1
    expired.signed.expires = NOW - timedelta(days=1)
    files = dict(repo.files)
    files["metadata/timestamp.json"] = repo.sign(expired, repo.signers["timestamp"])
    repo.write(out, "expired", files)

    with open(os.path.join(out, "targets.json"), "w") as f:
        json.dump(repo.contents, f)


if __name__ == "__main__":
    main()
