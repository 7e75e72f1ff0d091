"""python-tuf's ngclient against a repository `tandem repo` made.

usage: ngclient.py METADATA_URL TARGETS_URL ROOT_JSON WORK_DIR TARGET_PATH [EXPECT_SHA256]
Refreshes (following root rotations), resolves TARGET_PATH through the
delegations, downloads it and prints "ok <root version> <length>"; any TUF
error exits 1 with its message.
"""
import hashlib
import os
import shutil
import sys

from tuf.ngclient import Updater


def main():
    meta_url, targets_url, root, work, path = sys.argv[1:6]
    want = sys.argv[6] if len(sys.argv) > 6 else None
    md = os.path.join(work, "metadata")
    td = os.path.join(work, "targets")
    os.makedirs(md, exist_ok=True)
    os.makedirs(td, exist_ok=True)
    if not os.path.exists(os.path.join(md, "root.json")):
        shutil.copy(root, os.path.join(md, "root.json"))
    u = Updater(metadata_dir=md, metadata_base_url=meta_url + "/",
                target_base_url=targets_url + "/", target_dir=td)
    try:
        u.refresh()
        info = u.get_targetinfo(path)
        if info is None:
            print("no target %s" % path)
            return 1
        dest = u.download_target(info)
    except Exception as e:  # every TUF refusal is an exception
        print("%s: %s" % (type(e).__name__, e))
        return 1
    data = open(dest, "rb").read()
    if want and hashlib.sha256(data).hexdigest() != want:
        print("downloaded bytes differ")
        return 1
    print("ok %d %d %s" % (u._trusted_set.root.version, len(data),
                           info.custom.get("tandem", {}).get("version")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
