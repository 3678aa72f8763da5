#!/usr/bin/env python3
"""Writes the seed corpus of each harness (FuzzHarness.swift): real messages, datagrams,
manifests, PSK files and configurations. Run from this folder; crash inputs that were
fixed are kept beside the seeds as crash-*."""
import base64, hashlib, json, os, shutil, struct
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

def write(harness, name, data):
    os.makedirs(harness, exist_ok=True)
    with open(os.path.join(harness, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def compact(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True)

# wire: topic, 0 byte, payload
J = "j0123456789abcdef"
wire = {
    "announce": ("updraft/d/thermo-1/announce", compact({"product": "thermo", "version": "1.0.0", "accepts_updates": True, "boot": 7})),
    "presence": ("updraft/d/thermo-1/presence", "online"),
    "download": ("updraft/d/thermo-1/download", compact({"job": J, "offset": 4096, "count": 16, "size": 4096})),
    "progress": ("updraft/d/thermo-1/progress", compact({"job": J, "state": "downloading", "percent": 40})),
    "failed": ("updraft/d/thermo-1/progress", compact({"job": J, "state": "failed", "reason": "verify", "detail": "sha256 mismatch"})),
    "query": ("updraft/d/thermo-1/query", ""),
    "layout": ("things/thermo-1/updraft/announce", compact({"product": "thermo", "version": "2.0.0-rc.1", "lifetime": 60})),
    "chunk": ("updraft/d/thermo-1/chunk/" + J + "/4096", "\x00\x01\x02"),
    "error": ("updraft/d/thermo-1/error", compact({"code": "offset_out_of_range", "message": "Offset 9 is outside the image", "job": J, "offset": 9})),
}

# manifest: mode byte, then bytes (0: signed here; 1: signature + bytes; 2: an offer)
key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
pub = key.public_key().public_bytes_raw()
key_id = hashlib.sha256(pub).hexdigest()[:16]
image = b"firmware image " * 100
manifest = compact({"format": 1, "product": "thermo", "version": "1.1.0", "sequence": 4, "size": len(image),
                    "sha256": hashlib.sha256(image).hexdigest(), "created": 1764000000, "key_id": key_id}).encode()
signature = key.sign(manifest)
offer = {"job": J, "firmware": "thermo@1.1.0", "product": "thermo", "version": "1.1.0", "size": len(image),
         "sha256": hashlib.sha256(image).hexdigest(), "sequence": 4, "manifest": base64.b64encode(manifest).decode(),
         "signature": base64.b64encode(signature).decode(), "chunk": {"min": 256, "max": 65536, "preferred": 4096, "max_count": 64}}
wire["offer"] = ("updraft/d/thermo-1/job", compact(offer))
for name, (topic, payload) in wire.items():
    write("wire", name, topic.encode() + b"\x00" + payload.encode())

write("manifest", "signed", b"\x00" + manifest)
write("manifest", "no-key-id", b"\x00" + compact({"format": 1, "product": "thermo", "version": "1.0.0", "sequence": 1, "size": 3, "sha256": "00" * 32, "created": 0}).encode())
write("manifest", "signature", b"\x01" + signature + manifest)
write("manifest", "offer", b"\x02" + compact(offer).encode())
write("manifest", "offer-coap", b"\x02" + compact(dict(offer, chunk=None, download="fw/0123456789abcdef")).encode())
write("manifest", "offer-rollback", b"\x02" + compact(dict(offer, sequence=2)).encode())

# coap: 2 bytes room, 4 bytes body size, then a datagram
def option_bytes(options):
    out, last = b"", 0
    for number, value in sorted(options, key=lambda o: o[0]):
        delta, length = number - last, len(value)
        def nib(n):
            return (n, b"") if n < 13 else (13, bytes([n - 13])) if n < 269 else (14, struct.pack(">H", n - 269))
        (d, dx), (l, lx) = nib(delta), nib(length)
        out += bytes([d << 4 | l]) + dx + lx + value
        last = number
    return out

def datagram(code, options, payload=b"", token=b"\x12\x34"):
    data = bytes([0x40 | len(token), code]) + struct.pack(">H", 0x1234) + token + option_bytes(options)
    return data + (b"\xff" + payload if payload else b"")

def uint(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")

URI_PATH, CONTENT_FORMAT, URI_QUERY, ACCEPT, BLOCK2, SIZE2 = 11, 12, 15, 17, 23, 28
room = struct.pack(">H", 1088 - 16)
body = struct.pack(">I", len(image) - 1)
coap = {
    "announce": datagram(2, [(URI_PATH, b"announce"), (CONTENT_FORMAT, uint(50)), (URI_QUERY, b"d=thermo-1")],
                         compact({"product": "thermo", "version": "1.0.0", "accepts_updates": True, "lifetime": 3600}).encode()),
    "progress": datagram(2, [(URI_PATH, b"progress"), (CONTENT_FORMAT, uint(50))],
                         compact({"job": J, "state": "installed"}).encode()),
    "pending": datagram(1, [(URI_PATH, b"pending"), (URI_QUERY, b"d=thermo-1"), (ACCEPT, uint(50))]),
    "job-observe": datagram(1, [(6, b""), (URI_PATH, b"job"), (URI_PATH, b"thermo-1")]),
    "block2-first": datagram(1, [(URI_PATH, b"fw"), (URI_PATH, b"0123456789abcdef"), (BLOCK2, uint(0 << 4 | 6)), (SIZE2, b"")]),
    "block2-later": datagram(1, [(URI_PATH, b"fw"), (URI_PATH, b"0123456789abcdef"), (BLOCK2, uint(3 << 4 | 2))]),
    "block2-szx7": datagram(1, [(URI_PATH, b"fw"), (URI_PATH, b"0123456789abcdef"), (BLOCK2, uint(1 << 4 | 7))]),
}
for name, data in coap.items():
    write("coap", name, room + body + data)
write("coap", "small-room", struct.pack(">H", 40) + body + datagram(1, [(URI_PATH, b"fw"), (BLOCK2, uint(5 << 4 | 6))]))

# psk
write("psk", "provisioned", "thermo-1 Ab3dEfGhJkLmNpQrStUvWx2y\nthermo-2 ZyXwVuTsRqPnMkJhGfEdCbA9\n")
write("psk", "comments", "# CoAP pre-shared keys\n\n  thermo-1   secret key with spaces  \n#thermo-2 old\nbad-line-without-key\n")
write("psk", "crlf", "thermo-1 k1\r\nthermo-2\tk2\r\nthermo-3 " + "x" * 65 + "\r\n")

# config
write("config", "default", open("../../../Config/updraft.yaml").read())
write("config", "small", "data_dir: /var/lib/updraft\nlog_level: debug\nmqtt:\n  topic_prefix: fleet/eu\n  broker:\n    port: 1884\ncoap:\n  port: 0\n")
write("config", "wrong-type", "mqtt:\n  broker:\n    port: abc\n")
write("config", "group-as-scalar", "store: 5\nunknown_key: 1\n")
write("config", "out-of-range", "mqtt:\n  max_control_bytes: 10\n  chunk:\n    min: 70000\n")
