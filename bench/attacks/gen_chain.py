#!/usr/bin/env python3
"""Emit a git fast-import stream: a chain of N tiny commits on REF.

usage: gen_chain.py REF N [DATE] [FROM] | git fast-import
DATE: committer time (default 4102444800 = year 2100: newer than anything,
so a revwalk with a hidden side must walk the whole chain first).
FROM: parent of the first commit (default: a root commit).
"""
import sys
ref, n = sys.argv[1], int(sys.argv[2])
date = sys.argv[3] if len(sys.argv) > 3 else "4102444800"
frm = sys.argv[4] if len(sys.argv) > 4 else None
w = sys.stdout.buffer.write
for i in range(n):
    msg = b"j%d\n" % i
    w(b"commit %s\n" % ref.encode())
    w(b"mark :%d\n" % (i + 1))
    w(b"committer j <j> %s +0000\n" % date.encode())
    w(b"data %d\n%s" % (len(msg), msg))
    if i == 0 and frm:
        w(b"from %s\n" % frm.encode())
    if i == 0 and not frm:
        w(b"deleteall\n")
    w(b"\n")
