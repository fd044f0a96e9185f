"""Pack-format pieces shared by the hand-written attack packs."""


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def obj_header(kind, size):
    b = (kind << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(b | 0x80)
        b = size & 0x7F
        size >>= 7
    out.append(b)
    return bytes(out)

def ofs(off):
    out = bytearray([off & 0x7F])
    off >>= 7
    while off:
        off -= 1
        out.insert(0, 0x80 | (off & 0x7F))
        off >>= 7
    return bytes(out)
