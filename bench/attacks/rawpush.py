#!/usr/bin/env python3
"""Push with hand-written receive-pack commands (what any client may send).

usage: rawpush.py SERVER_GIT COMMANDS_FILE [PACK_FILE|-]
  COMMANDS_FILE: lines "<old> <new> <ref>" sent verbatim (duplicates, bogus
  old values, odd names: whatever the attacker likes).
  PACK_FILE: a pack to send after the commands ("-" or absent: none; a
  pack is required unless every command is a deletion).
Prints the report-status lines; the hook's stderr passes through.
"""
import subprocess, sys

def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data

def read_pkts(f):
    while True:
        h = f.read(4)
        if not h:
            return
        n = int(h, 16)
        if n == 0:
            yield None
            continue
        yield f.read(n - 4)

def main():
    server, cmds = sys.argv[1], sys.argv[2]
    pack = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    lines = [l.rstrip(b"\n") for l in open(cmds, "rb") if l.strip()]
    p = subprocess.Popen(["git", "receive-pack", server], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    for x in read_pkts(p.stdout):
        if x is None:
            break
    out = bytearray()
    for i, l in enumerate(lines):
        out += pkt(l + (b"\0report-status" if i == 0 else b"") + b"\n")
    out += b"0000"
    p.stdin.write(out)
    if pack:
        with open(pack, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                p.stdin.write(b)
    p.stdin.close()
    n = 0
    for x in read_pkts(p.stdout):
        if x is None:
            break
        n += 1
        if n <= 8:
            sys.stdout.write(x.decode(errors="replace"))
    if n > 8:
        print(f"... {n} report lines in all")
    p.wait()

main()
