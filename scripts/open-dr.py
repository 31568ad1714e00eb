#!/usr/bin/env python3
"""Opens a vsigner/io.finnet `.dr` disaster-recovery file with implementations independent of
vsigner: kyber-py (ML-KEM-768, FIPS 203) and the `cryptography` package (AES-256-GCM).

    python3 scripts/open-dr.py PRIVATE_KEY.pem FILE.dr

Prints one JSON document: the envelope's clear fields, the decrypted share plaintext (parsed:
its integers are Python's arbitrary-precision ints, written back as JSON numbers) and the
same with every integer as a decimal string.
The private key is PKCS#8 with the 64-byte seed ([0] IMPLICIT) or OpenSSL's seed-and-expanded
SEQUENCE. Used by vsigner's tests as a check of the format from outside the project.
"""
import base64
import json
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kyber_py.ml_kem import ML_KEM_768

KEM_CT = 1088
NONCE = 12
OID_ML_KEM_768 = bytes.fromhex("0609608648016503040402")  # 2.16.840.1.101.3.4.4.2


def seed_of(pem: str) -> bytes:
    der = base64.b64decode("".join(l for l in pem.splitlines() if l and not l.startswith("-----")))
    if OID_ML_KEM_768 not in der:
        sys.exit("not an ML-KEM-768 PKCS#8 private key")
    # privateKey is the OCTET STRING after the AlgorithmIdentifier; its content is one of
    # [0] seed (0x80 0x40 …) or SEQUENCE { OCTET STRING seed (0x04 0x40 …), expanded }.
    for marker in (b"\x80\x40", b"\x30\x82"):
        at = der.find(marker, der.find(OID_ML_KEM_768))
        if at < 0:
            continue
        if marker == b"\x80\x40":
            return der[at + 2 : at + 66]
        inner = der[at + 4 :]
        if inner[:2] == b"\x04\x40":
            return inner[2:66]
    sys.exit("the private key holds no seed")


def main() -> None:
    key_path, file_path = sys.argv[1], sys.argv[2]
    seed = seed_of(open(key_path).read())
    _ek, dk = ML_KEM_768.key_derive(seed)
    envelope = json.load(open(file_path))
    data = base64.b64decode(envelope["dataB64"])
    shared = ML_KEM_768.decaps(dk, data[:KEM_CT])
    plaintext = AESGCM(shared).decrypt(data[KEM_CT : KEM_CT + NONCE], data[KEM_CT + NONCE :], None)
    clear = {k: v for k, v in envelope.items() if k != "dataB64"}
    shares = json.loads(plaintext)
    # Integers as decimal strings too, for readers whose JSON numbers are doubles.
    as_text = {
        "VaultId": shares["VaultId"],
        "Threshold": shares["Threshold"],
        "Data": [
            {k: ({"Curve": v["Curve"], "Coords": [str(c) for c in v["Coords"]]} if k.endswith("Pub") else str(v))
             for k, v in d.items()}
            for d in shares["Data"]
        ],
    }
    print(json.dumps({"envelope": clear, "plaintext": shares, "decimal": as_text}))


if __name__ == "__main__":
    main()
