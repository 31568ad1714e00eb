#!/usr/bin/env python3
"""Independent check of `vsigner demo --json`, with libraries outside the vsigner code base.

    cargo run --release -- demo --json | python3 scripts/check-demo.py

- secp256k1 signatures: verified with `cryptography` (OpenSSL) under the vault's public key
  over the 32-byte digest, s in the lower half of the group order, and the recovery id
  recovers the vault's key (`eth_keys`);
- the vault's Ethereum address is the Keccak-256 address of its key (`eth_keys`);
- the signed EIP-1559 transaction recovers to the vault's address (`eth_account`), is of
  type 2, and its signature is the one reported;
- ed25519 signatures: verified with `cryptography` under the vault's key, or under the
  child key the checker derives itself (the Edwards derivation of `hd-wallet`, with
  libsodium's point arithmetic through PyNaCl);
- secp256r1 (P-256) signatures: verified with `cryptography` over the SHA-256 of the
  message, s in the lower half of the group order;
- bip340 signatures: verified with `coincurve` (libsecp256k1) under the vault's x-only key,
  or, for a Taproot signature, under the BIP-341 output key the checker computes itself
  from the vault key (and which must be the one the document reports);
- every reshare kept the public key (the key after equals the vault's key before), and a
  signature made after the reshare verifies under the same key;
- a rejected request has no signature in the document;
- a vault of weighted devices is in the document, and no signature uses more shares of a
  device than its weight.

Exits 0 when every check passes, 1 otherwise (each failure is printed).
Needs: pip install cryptography eth-account coincurve pynacl
"""

import hashlib
import hmac
import json
import sys

import nacl.bindings as sodium

from coincurve import PublicKeyXOnly
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_keys import keys
from hexbytes import HexBytes

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_L = 2**252 + 27742317777372353535851937790883648493

failures = []
passed = 0


def check(condition, what):
    global passed
    if condition:
        passed += 1
    else:
        failures.append(what)


def b(hex_text):
    return bytes.fromhex(hex_text[2:] if hex_text.startswith("0x") else hex_text)


def uncompressed(sec1):
    """The 64-byte x||y of a SEC1 secp256k1 key."""
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), sec1)
    numbers = point.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def secp256k1_verifies(public_key, digest, signature):
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    try:
        key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except InvalidSignature:
        return False


def p256_verifies(public_key, digest, signature):
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    try:
        key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except InvalidSignature:
        return False


def taproot_output_key(internal_key):
    """BIP-341: x(P + int(hash_TapTweak(x(P)))G), for an output without a script tree."""
    tag = hashlib.sha256(b"TapTweak").digest()
    key = PublicKeyXOnly(internal_key)
    key.tweak_add(hashlib.sha256(tag + tag + internal_key).digest())
    return key.format()


def ed25519_child(public_key, chain_code, path):
    """hd-wallet's Edwards derivation: I = HMAC-SHA512(chain code, key || 0x00 || index (BE));
    child = key + (I_L as a big-endian integer mod l)·G; the next chain code is I_R."""
    key = public_key
    for part in path.removeprefix("m/").split("/"):
        index = int(part)
        i = hmac.new(chain_code, key + b"\x00" + index.to_bytes(4, "big"), hashlib.sha512).digest()
        shift = (int.from_bytes(i[:32], "big") % ED25519_L).to_bytes(32, "little")
        key = sodium.crypto_core_ed25519_add(key, sodium.crypto_scalarmult_ed25519_base_noclamp(shift))
        chain_code = i[32:]
    return key


def bip340_verifies(x_only_key, message, signature):
    try:
        return PublicKeyXOnly(x_only_key).verify(signature, message)
    except ValueError:
        return False


def main():
    doc = json.load(sys.stdin)
    vaults = {v["id"]: v for v in doc["vaults"]}
    curves = sorted({v["curve"] for v in vaults.values()})
    check(curves == ["bip340", "ed25519", "secp256k1", "secp256r1"], f"the document has a vault of each scheme (has {curves})")
    check(any(max(v["weights"]) > 1 for v in vaults.values()), "the document has a vault of weighted devices")
    for v in vaults.values():
        shares = sum(v["weights"])
        check(len(v["weights"]) == v["devices"] and min(v["weights"]) >= 1,
              f"vault {v['id']}: a weight of at least 1 for each of its {v['devices']} devices")
        check(2 <= v["threshold"] <= shares, f"vault {v['id']}: a {v['threshold']}-of-{shares}-shares shape")
        if v["curve"] == "ed25519":
            check(len(b(v["public_key"])) == 32, f"vault {v['id']}: a 32-byte ed25519 key")
        if v["curve"] == "secp256k1":
            pk = b(v["public_key"])
            check(len(pk) == 33 and pk[0] in (2, 3), f"vault {v['id']}: a compressed SEC1 key")
            address = keys.PublicKey(uncompressed(b(v["public_key"]))).to_checksum_address()
            check(address.lower() == v["address"].lower(), f"vault {v['id']}: address {v['address']} is the key's ({address})")
        if v["curve"] == "secp256r1":
            pk = b(v["public_key"])
            check(len(pk) == 33 and pk[0] in (2, 3), f"vault {v['id']}: a compressed SEC1 P-256 key")
        if v["curve"] == "bip340":
            pk = b(v["public_key"])
            check(len(pk) == 32, f"vault {v['id']}: a 32-byte x-only key")
            check(b(v.get("taproot_output_key", "")) == taproot_output_key(pk),
                  f"vault {v['id']}: the Taproot output key is BIP-341's of the vault key")

    # Each signature is by the vault's threshold of devices: the threshold before the reshare,
    # or (a committee with the device that joined) the threshold after it.
    reshared = {r["vault"]: r for r in doc["reshares"]}
    kinds = set()
    for s in doc["signatures"]:
        v = vaults[s["vault"]]
        label = f"{s['kind']} signature {s.get('operation', '')} of vault {v['id']}"
        check(s["curve"] == v["curve"], f"{label}: the vault's curve")
        r = reshared.get(v["id"])
        thresholds = {v["threshold"]} | ({r["to"]["threshold"]} if r else set())
        # One entry per share used: a device of weight w may appear up to w times.
        weight = dict(zip(v["signers"], v["weights"]))
        over = [d for d in set(s["signers"]) if d in weight and s["signers"].count(d) > weight[d]]
        check(len(s["signers"]) in thresholds and not over,
              f"{label}: signed with {len(s['signers'])} shares, a threshold of the vault ({sorted(thresholds)}), no device beyond its weight")
        signature = b(s["signature"])
        check(len(signature) == 64, f"{label}: 64 bytes")
        kinds.add((s["curve"], s["kind"]))
        if s["curve"] == "secp256k1":
            public_key = b(v["public_key"])
            r, low_s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            check(0 < low_s <= SECP256K1_N // 2, f"{label}: s is low")
            if s["kind"] == "digest":
                digest = b(s["digest"])
                check(secp256k1_verifies(public_key, digest, signature), f"{label}: verifies (cryptography)")
                recovered = keys.Signature(vrs=(s["recovery_id"], r, low_s)).recover_public_key_from_msg_hash(digest)
                check(recovered.to_bytes() == uncompressed(public_key), f"{label}: the recovery id recovers the vault key")
            elif s["kind"] == "eth_tx":
                raw = s["raw_transaction"]
                check(b(raw)[0] == 2, f"{label}: an EIP-1559 (type 2) transaction")
                sender = Account.recover_transaction(raw)
                check(sender.lower() == v["address"].lower(), f"{label}: recovers to the vault address {v['address']} (eth_account: {sender})")
                # The signature inside the transaction is the one reported.
                tx = TypedTransaction.from_bytes(HexBytes(b(raw))).as_dict()
                check((tx["r"], tx["s"], tx["v"]) == (r, low_s, s["recovery_id"]), f"{label}: carries the reported signature")
            else:
                failures.append(f"{label}: unknown kind")
        elif s["curve"] == "ed25519":
            key = b(v["public_key"])
            if "derivation_path" in s:
                key = ed25519_child(key, b(v.get("chain_code", "")), s["derivation_path"])
                kinds.add(("ed25519", "child"))
            key = ed25519.Ed25519PublicKey.from_public_bytes(key)
            try:
                key.verify(signature, b(s["message"]))
                check(True, "")
            except InvalidSignature:
                failures.append(f"{label}: does not verify (cryptography)")
        elif s["curve"] == "secp256r1":
            check(0 < int.from_bytes(signature[32:], "big") <= P256_N // 2, f"{label}: s is low")
            digest = hashlib.sha256(b(s["message"])).digest()
            check(p256_verifies(b(v["public_key"]), digest, signature), f"{label}: verifies over SHA-256 (cryptography)")
        elif s["curve"] == "bip340":
            key = b(v["public_key"])
            if "taproot_output_key" in s:
                key = taproot_output_key(key)
                check(b(s["taproot_output_key"]) == key, f"{label}: for the vault's Taproot output key")
                kinds.add(("bip340", "taproot"))
            check(bip340_verifies(key, b(s["message"]), signature), f"{label}: verifies (coincurve)")
        else:
            failures.append(f"{label}: unknown curve {s['curve']}")
    for needed in [("secp256k1", "digest"), ("secp256k1", "eth_tx"), ("ed25519", "message"),
                   ("ed25519", "child"), ("secp256r1", "message"), ("bip340", "message"), ("bip340", "taproot")]:
        check(needed in kinds, f"a {needed[0]} {needed[1]} signature is in the document")

    check(len(doc["reshares"]) >= 1, "the document has a reshare")
    for r in doc["reshares"]:
        v = vaults[r["vault"]]
        check(b(r["public_key"]) == b(v["public_key"]), f"reshare of {v['id']}: the public key after equals the key before")
        check(r["public_key_unchanged"] is True, f"reshare of {v['id']}: reported unchanged")
        check(r["to"]["threshold"] == r["from"]["threshold"] + 1 and r["to"]["devices"] == r["from"]["devices"] + 1,
              f"reshare of {v['id']}: to (T+1)-of-(N+1)")
        after = [s for s in doc["signatures"] if s["vault"] == v["id"] and len(s["signers"]) == r["to"]["threshold"]]
        check(len(after) >= 1, f"reshare of {v['id']}: a signature by the new threshold of devices")
        if "joined" in r:  # vsigner's extension of the contract: the device ids that joined
            check(any(set(r["joined"]) & set(s["signers"]) for s in after),
                  f"reshare of {v['id']}: a signature by a committee with the new device")

    check(len(doc["rejected"]) >= 1, "the document has a rejected request")
    signed_ops = {s.get("operation") for s in doc["signatures"]}
    for rej in doc["rejected"]:
        check(rej["vault"] in vaults, f"rejected operation {rej['operation']}: of a vault of the document")
        check(bool(rej["operation"]) and bool(rej["reason"]), f"rejected operation {rej['operation']!r}: has an id and a reason")
        check(rej["operation"] not in signed_ops, f"rejected operation {rej['operation']} has no signature")

    for f in failures:
        print("FAIL:", f)
    print(f"{passed} checks passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
