#!/usr/bin/env python3
"""Names the OVMF module a hung guest was in.

The QEMU rig writes cpu-state.txt when a wait times out (qemu-tests/README.md):
registers, and the code at the instruction pointer (`x/6i $pc` in three full
samples, `x/3i $pc` in twenty short ones). A release OVMF prints no load
addresses, so this looks the code bytes of each sample up in the firmware's
own modules: it unpacks the LZMA-compressed firmware volumes of OVMF_CODE,
walks their files, and prints how many samples were in which module at which
offset, and where each module was loaded.

    scripts/ovmf-where.py VMDIR/cpu-state.txt [/usr/share/OVMF/OVMF_CODE_4M.fd]

Needs only Python 3 (lzma is in the standard library).
"""
import lzma
import re
import struct
import sys
import uuid

LZMA_SECTION = uuid.UUID("EE4E5898-3914-4259-9D6E-DC7BD79403CF").bytes_le
SECTION_PE32, SECTION_UI = 0x10, 0x15


def volumes(fd):
    """The firmware image and every LZMA section in it, unpacked."""
    blobs = [fd]
    i = fd.find(LZMA_SECTION)
    while i >= 0:
        # A GUID-defined section: 4-byte header, the GUID, then the offset
        # of its data from the section's start.
        start = i - 4 + struct.unpack_from("<H", fd, i + 16)[0]
        try:
            blobs.append(lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(fd[start:]))
        except lzma.LZMAError:
            pass
        i = fd.find(LZMA_SECTION, i + 16)
    return blobs


def modules(blob):
    """(name, PE32 bytes) of every file with a PE32 section in the blob's volumes."""
    out = []
    at = blob.find(b"_FVH")
    while at >= 0:
        fv = at - 40
        fv_len = struct.unpack_from("<Q", blob, fv + 32)[0] if fv >= 0 else 0
        if fv >= 0 and 0 < fv_len and fv + fv_len <= len(blob):
            p = fv + struct.unpack_from("<H", blob, fv + 48)[0]
            end = fv + fv_len
            while p + 24 <= end:
                p = fv + (p - fv + 7) // 8 * 8
                size = int.from_bytes(blob[p + 20:p + 23], "little")
                if size in (0, 0xFFFFFF) or p + size > end:
                    break
                name, pe, q = None, None, p + 24
                while q + 4 <= p + size:
                    q = p + (q - p + 3) // 4 * 4
                    ssz = int.from_bytes(blob[q:q + 3], "little")
                    if ssz < 4 or q + ssz > p + size:
                        break
                    kind = blob[q + 3]
                    if kind == SECTION_UI:
                        name = blob[q + 4:q + ssz].decode("utf-16le", "replace").rstrip("\0")
                    elif kind == SECTION_PE32:
                        pe = blob[q + 4:q + ssz]
                    q += ssz
                if pe:
                    out.append((name or str(uuid.UUID(bytes_le=blob[p:p + 16])), pe))
                p += size
        at = blob.find(b"_FVH", at + 4)
    return out


def rva(pe, off):
    """The relative virtual address of file offset `off` in a PE32+ image."""
    try:
        hdr = struct.unpack_from("<I", pe, 0x3C)[0]
        count, opt = struct.unpack_from("<HxxxxxxxxxxxxH", pe, hdr + 6)
        table = hdr + 24 + opt
        for k in range(count):
            vaddr, raw_size, raw = struct.unpack_from("<4xIII", pe, table + 40 * k + 8)
            if raw <= off < raw + raw_size:
                return off - raw + vaddr
    except struct.error:
        pass
    return off


def image_size(pe):
    """SizeOfImage of a PE32+ image (its extent once loaded)."""
    try:
        return struct.unpack_from("<I", pe, struct.unpack_from("<I", pe, 0x3C)[0] + 24 + 56)[0]
    except struct.error:
        return len(pe)


def samples(text):
    """(pc, code bytes, count) of each `x/Ni $pc` listing in cpu-state.txt:
    the full samples count once, the short ones as often as they were seen."""
    out = []
    for block in re.split(r"^--- ", text, flags=re.M):
        head = block.splitlines()[0] if block else ""
        m = re.match(r"(?:sample \d+|short sample x(\d+)) `x/\d+i \$pc`", head)
        if not m:
            continue
        pc, code = None, b""
        for line in block.splitlines()[1:]:
            ins = re.match(r"\s*(0x[0-9a-f]+):\s+((?:[0-9a-f]{2} )+)", line)
            if ins:
                pc = pc or int(ins.group(1), 16)
                code += bytes.fromhex(ins.group(2).replace(" ", ""))
        if pc is not None:
            out.append((pc, code, int(m.group(1) or 1)))
    return out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().split("\n\n")[1])
    state = open(sys.argv[1], encoding="utf-8", errors="replace").read()
    fd_path = sys.argv[2] if len(sys.argv) == 3 else "/usr/share/OVMF/OVMF_CODE_4M.fd"
    mods = [m for blob in volumes(open(fd_path, "rb").read()) for m in modules(blob)]
    found = samples(state)
    if not found:
        sys.exit(f"{sys.argv[1]}: no `x/Ni $pc` samples with code bytes")
    # Library code is in several modules; the firmware loads images on page
    # boundaries, so a module whose base comes out page-aligned is the one
    # it was. A base found for one sample then places the others.
    hits = {pc: [(n, rva(pe, pe.find(code)), pe) for n, pe in mods if code in pe]
            for pc, code, _ in found}
    loaded = {}
    for pc, h in hits.items():
        for n, off, pe in h:
            if (pc - off) % 0x1000 == 0:
                loaded[pc - off] = (n, image_size(pe))

    def where(pc):
        for base, (n, size) in loaded.items():
            if base <= pc < base + size:
                return f"{n}+{pc - base:#x}"
        if hits.get(pc):
            return "one of " + ", ".join(f"{n}+{o:#x}" for n, o, _ in hits[pc])
        return f"{pc:#x}, in none of the {len(mods)} modules of {fd_path}"

    counts = {}
    for pc, _, n in found:
        key = (pc, where(pc))
        counts[key] = counts.get(key, 0) + n
    print(f"{sum(n for *_, n in found)} samples of the code at the instruction pointer:")
    for (pc, name), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{n:4}  {pc:#x}  {name}")
    for base, (n, size) in sorted(loaded.items()):
        print(f"{n} loaded at {base:#x} ({size} bytes)")


if __name__ == "__main__":
    main()
