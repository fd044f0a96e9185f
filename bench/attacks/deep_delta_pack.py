#!/usr/bin/env python3
"""Write a pack of N+1 distinct 8-byte blobs, each an OFS_DELTA on the one
before it: one delta chain N deep (git's own pack-objects never writes
chains deeper than 4095; index-pack accepts any depth).

usage: deep_delta_pack.py N OUT.pack
Objects are unreachable: receive-pack keeps them (only what the new ref
values reach must be connected).
"""
import hashlib, struct, sys, zlib

from packfmt import varint, obj_header, ofs  # noqa: E402

n, path = int(sys.argv[1]), sys.argv[2]
body = bytearray(b"PACK" + struct.pack(">II", 2, n + 1))
prev_at = len(body)
first = struct.pack(">Q", 0)
body += obj_header(3, len(first)) + zlib.compress(first, 9)
for i in range(1, n + 1):
    at = len(body)
    delta = varint(8) + varint(8) + bytes([8]) + struct.pack(">Q", i)
    body += obj_header(6, len(delta)) + ofs(at - prev_at) + zlib.compress(delta, 9)
    prev_at = at
body += hashlib.sha1(body).digest()
open(path, "wb").write(body)
print(f"{path}: {len(body)} bytes, {n + 1} objects, delta depth {n}")
