#!/usr/bin/env python3
"""Write a raw test image: SIZE_MIB MiB of 4 KiB blocks in runs of 1-64 blocks,
alternately random data and zeros, so that about half the blocks are zero.
Usage: gen-raw.py PATH SIZE_MIB [SEED]"""
import os, random, sys

path, mib = sys.argv[1], int(sys.argv[2])
rnd = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
nblocks, bs, i, data = mib * 256, 4096, 0, True
with open(path, "wb") as f:
    while i < nblocks:
        n = min(rnd.randint(1, 64), nblocks - i)
        if data:
            f.write(os.urandom(n * bs))
        else:
            f.seek(n * bs, os.SEEK_CUR)
        i, data = i + n, not data
    f.truncate(nblocks * bs)
