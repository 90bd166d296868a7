#!/usr/bin/env python3
"""Fabricate a template in a store without running a sandbox (no /dev/kvm
needed): an image NAME.mem (16 MiB, one page of data; a branch's is a
commit over PARENT.mem) and the state file STORE/templates/NAME with the
fields cf_template_open checks (shim/snapshot.c: header, image name, image
id, parent name, memory size, root). Forking from it is not possible: the rest of
the state is absent. Usage: mk-template.py COWFORK STORE NAME [PARENT]"""
import ctypes, json, os, struct, subprocess, sys

cowfork, store, name = sys.argv[1:4]
parent = sys.argv[4] if len(sys.argv) > 4 else ""
size = 16 << 20
raw = os.path.join(store, "..", name + ".raw")
with open(raw, "wb") as f:
    f.truncate(size)
    f.seek(4096 * (1 + len(name)))
    f.write(name.encode() * 10)
env = dict(os.environ, COWFORK_STORE=store)
if parent:
    subprocess.run([cowfork, "image", "commit", parent + ".mem", raw, name + ".mem"], check=True, env=env)
else:
    subprocess.run([cowfork, "image", "import", raw, name + ".mem"], check=True, env=env)
os.unlink(raw)
info = json.loads(subprocess.run([cowfork, "image", "info", name + ".mem", "--json"], check=True, env=env,
                                 capture_output=True).stdout)
def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b
payload = s(name + ".mem") + bytes.fromhex(info["id"].replace("-", "")) + s(parent) + struct.pack("<Q", size) + s("/")
xxh = ctypes.CDLL("libxxhash.so.0").XXH3_64bits
xxh.restype = ctypes.c_uint64
xxh.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
hdr = b"CFSTATE\0" + struct.pack("<IIQQ", 1, 0, len(payload), xxh(payload, len(payload)))
os.makedirs(os.path.join(store, "templates"), exist_ok=True)
with open(os.path.join(store, "templates", name), "wb") as f:
    f.write(hdr + payload)
