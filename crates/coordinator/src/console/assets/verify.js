// A signature checked in this browser. The page computes the signed digest from the
// payload itself (keccak256 of an EIP-1559 transaction, EIP-191 or SHA-256 of a message, a
// digest as given), refuses a coordinator whose digest differs, and verifies the signature
// under the vault's public key with the audited noble libraries (assets/vendor, byte for
// byte as npm publishes them). On secp256k1 it also recovers the signer from the recovery
// id and compares it with the vault's key and address; a transaction's signature must be
// low-s with a recovery id of 0 or 1, as Ethereum requires, and its hash must be the signed
// transaction's.
//
// The vault's key itself comes from the coordinator. The page shows it with the verdict,
// and this browser pins it the first time it sees the vault: a later page giving another
// key for the same vault is refused (`pinnedKey`). Compare the key with your own records
// (the devices log it at key generation).
//
// Not checked here (the page says the coordinator verified them): signatures under a child
// key (BIP-32 derivation) or a Taproot output key.
import { secp256k1, schnorr } from "./vendor/noble-curves/secp256k1.js";
import { p256 } from "./vendor/noble-curves/nist.js";
import { ed25519 } from "./vendor/noble-curves/ed25519.js";
import { keccak_256 } from "./vendor/noble-hashes/sha3.js";
import { sha256 } from "./vendor/noble-hashes/sha2.js";
import { hexBytes, signedEip1559, toHex } from "./eth.js";

const bytes = (s) => hexBytes(s);
const hex = toHex;

// The coordinator's `signingDigest` of this payload, computed again here: what an ECDSA
// committee signs. Null for a message on the Schnorr schemes (signed as is).
export function digestHere(curve, sign) {
  const payload = bytes(sign.payload);
  if (sign.payloadKind === "digest") return payload;
  if (sign.payloadKind === "eth_tx") return keccak_256(payload);
  if (sign.payloadKind === "message") {
    if (curve === "secp256k1") {
      const prefix = new TextEncoder().encode(`\x19Ethereum Signed Message:\n${payload.length}`);
      const all = new Uint8Array(prefix.length + payload.length);
      all.set(prefix);
      all.set(payload, prefix.length);
      return keccak_256(all);
    }
    if (curve === "secp256r1") return sha256(payload);
    return null;
  }
  throw new Error(`unknown payload kind ${sign.payloadKind}`);
}

// The Ethereum address of a secp256k1 public key (lower case).
export function ethereumAddress(publicKey) {
  const uncompressed = secp256k1.Point.fromBytes(publicKey).toBytes(false);
  return "0x" + hex(keccak_256(uncompressed.subarray(1)).subarray(12));
}

// The vault's key this browser saw first for `vaultId` (pinned now if it saw none), or null
// when the browser keeps nothing.
export function pinnedKey(vaultId, publicKey) {
  try {
    const name = `vsigner.vaultKey.${vaultId}`;
    const seen = localStorage.getItem(name);
    if (seen) return seen;
    localStorage.setItem(name, publicKey.toLowerCase());
    return publicKey.toLowerCase();
  } catch (_) {
    return null;
  }
}

const short = (h) => (h.length > 20 ? `${h.slice(0, 10)}…${h.slice(-8)}` : h);

// What the page can say of a completed signature operation's signature: { ok, text }, or
// null when it has nothing to check or cannot check it (see above).
export function verifyHere(op) {
  const sig = op.result && op.result.signature;
  const sign = op.sign;
  if (!sig || !sign || !op.vault.publicKey) return null;
  if (sign.derivationPath || sign.taproot) return null;
  try {
    const curve = op.vault.curve;
    const vaultKey = op.vault.publicKey.replace(/^0x/, "").toLowerCase();
    const resultKey = op.result.publicKey ? op.result.publicKey.replace(/^0x/, "").toLowerCase() : null;
    if (resultKey && resultKey !== vaultKey) {
      return { ok: false, text: `✗ The result names the key ${short(resultKey)}, not the vault's ${short(vaultKey)}.` };
    }
    if (!op.vaultId) return { ok: false, text: "✗ The operation names no vault: its key cannot be pinned." };
    const pinned = pinnedKey(op.vaultId, vaultKey);
    if (pinned && pinned !== vaultKey) {
      return {
        ok: false,
        text: `✗ The coordinator now gives this vault the key ${short(vaultKey)}; this browser first saw ${short(pinned)}. Do not trust this page's signatures.`,
      };
    }
    const key = bytes(vaultKey);
    const signature = bytes(sig);
    const payload = bytes(sign.payload);
    const digest = digestHere(curve, sign);
    if (digest && hex(digest) !== String(sign.signingDigest || "").replace(/^0x/, "").toLowerCase()) {
      return { ok: false, text: `✗ The coordinator's digest is not the payload's: this page computes ${hex(digest)}.` };
    }
    let ok;
    let what;
    let extra = "";
    if (curve === "secp256k1") {
      what = "ECDSA on secp256k1";
      const forEthereum = sign.payloadKind === "eth_tx";
      ok = secp256k1.verify(signature, digest, key, { prehash: false, lowS: forEthereum });
      const recovery = op.result.recoveryId;
      if (ok && forEthereum && recovery !== 0 && recovery !== 1) {
        return { ok: false, text: `✗ A transaction's recovery id must be 0 or 1, not ${recovery}.` };
      }
      // The signed transaction and its hash, when shown, must be this payload with this
      // signature.
      const { rawTransaction: raw, txHash } = op.result;
      if (ok && forEthereum && (raw || txHash)) {
        const signed = signedEip1559(payload, recovery, signature);
        if (!raw || hex(signed) !== raw.replace(/^0x/, "").toLowerCase()) {
          return { ok: false, text: "✗ The signed transaction shown is not this transaction with this signature." };
        }
        if (txHash && hex(keccak_256(signed)) !== txHash.replace(/^0x/, "").toLowerCase()) {
          return { ok: false, text: "✗ The transaction hash shown is not the signed transaction's." };
        }
      }
      if (ok && recovery !== null && recovery !== undefined) {
        const recovered = secp256k1.recoverPublicKey(Uint8Array.of(recovery, ...signature), digest, { prehash: false });
        const address = ethereumAddress(recovered);
        const keys = ethereumAddress(key);
        if (hex(recovered) !== hex(secp256k1.Point.fromBytes(key).toBytes(true))) {
          return { ok: false, text: `✗ The recovery id gives another signer, ${address}, not the vault's ${keys}.` };
        }
        if (op.vault.ethereumAddress && op.vault.ethereumAddress.toLowerCase() !== keys) {
          return { ok: false, text: `✗ The vault's address ${op.vault.ethereumAddress} is not its public key's (${keys}).` };
        }
        extra = ` The signer recovered from it is the vault's address ${address}.`;
      }
    } else if (curve === "secp256r1") {
      what = "ECDSA on P-256";
      ok = p256.verify(signature, digest, key, { prehash: false, lowS: false });
    } else if (curve === "ed25519") {
      what = "Ed25519";
      ok = ed25519.verify(signature, payload, key, { zip215: false });
    } else if (curve === "bip340") {
      what = "BIP-340 Schnorr";
      ok = schnorr.verify(signature, payload, key);
    } else {
      return null;
    }
    return ok
      ? { ok, text: `✓ Verified in this browser too: ${what} (noble-curves) under the vault's public key ${short(vaultKey)}.${extra}` }
      : { ok, text: "✗ This signature does not verify under the vault's public key in this browser." };
  } catch (e) {
    return { ok: false, text: `✗ This signature could not be checked in this browser: ${e.message}` };
  }
}
