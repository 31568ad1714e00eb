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


def tlv(b: bytes, i: int):
    """One DER element at b[i]: (tag, content, index after it)."""
    tag, length = b[i], b[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(b[i : i + n], "big")
        i += n
    return tag, b[i : i + length], i + length


def seed_of(pem: str) -> bytes:
    der = base64.b64decode("".join(l for l in pem.splitlines() if l and not l.startswith("-----")))
    tag, info, _ = tlv(der, 0)  # PrivateKeyInfo ::= SEQUENCE
    assert tag == 0x30, "not a PKCS#8 PrivateKeyInfo"
    _, _version, i = tlv(info, 0)
    tag, algorithm, i = tlv(info, i)
    if OID_ML_KEM_768 not in algorithm:
        sys.exit("not an ML-KEM-768 PKCS#8 private key")
    tag, private_key, _ = tlv(info, i)  # privateKey OCTET STRING
    assert tag == 0x04, "no privateKey"
    # ML-KEM-PrivateKey ::= CHOICE { seed [0], expandedKey OCTET STRING, both SEQUENCE { seed, expandedKey } }
    tag, value, _ = tlv(private_key, 0)
    if tag == 0x80:
        return value
    if tag == 0x30:
        inner_tag, seed, _ = tlv(value, 0)
        assert inner_tag == 0x04, "malformed seed-and-expanded key"
        return seed
    sys.exit("an expanded-only ML-KEM key: this script needs the seed")


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
