// Proving a device's passkeys file by possession: the person at the keyboard signs a fresh
// challenge with their authenticator, and this page checks the assertion against the
// public key in the file, as WebAuthn's relying party does (WebAuthn Level 3, §7.2): the
// client data's type, challenge and origin; the authenticator data's RP id hash and its
// user-present and user-verified flags; the signature over authenticatorData ‖
// SHA-256(clientDataJSON) under the entry's key (ES256 and EdDSA with noble-curves, RS256
// with WebCrypto).
//
// It also refuses an entry the device would refuse answers by: a signature counter in the
// file at or above the authenticator's, or backup flags that differ from the file's (the
// device runs webauthn-rs-core's checks, which reject both).
//
// A file made on a page the coordinator serves is only as honest as the coordinator: it
// could pair Alice's credential id with its own key. Each entry proven here, on a console
// the organisation serves itself (`vsigner console`), is held by whoever just signed.
import { p256 } from "./vendor/noble-curves/nist.js";
import { ed25519 } from "./vendor/noble-curves/ed25519.js";
import { sha256 } from "./vendor/noble-hashes/sha2.js";

export const b64url = (buf) =>
  btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");

export function fromB64url(s) {
  const b64 = String(s).replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// The entries of a passkeys file (the JSON a device's HumanApprovalPasskeysFile holds):
// [{ name, id (base64url), key (webauthn-rs COSE key) }].
export function fileEntries(text) {
  let file;
  try {
    file = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON: ${e.message}`);
  }
  if (!file || !Array.isArray(file.passkeys)) throw new Error('not a passkeys file: it has no "passkeys" list');
  return file.passkeys.map((e, i) => {
    const cred = e && e.passkey && e.passkey.cred;
    if (!cred || typeof cred.cred_id !== "string" || !cred.cred) throw new Error(`entry ${i + 1} is not a passkey`);
    return {
      name: String(e.name || `entry ${i + 1}`),
      id: cred.cred_id,
      key: cred.cred,
      counter: Number(cred.counter || 0),
      backupEligible: Boolean(cred.backup_eligible),
    };
  });
}

// Whether `signature` by the COSE `key` is over `message` (raises for a key this page
// cannot check).
async function coseVerify(key, message, signature) {
  const k = key.key || {};
  if (key.type_ === "ES256" && k.EC_EC2 && k.EC_EC2.curve === "SECP256R1") {
    const [x, y] = [fromB64url(k.EC_EC2.x), fromB64url(k.EC_EC2.y)];
    if (x.length !== 32 || y.length !== 32) throw new Error("its key's coordinates are not 32 bytes each");
    const point = new Uint8Array(65);
    point[0] = 4;
    point.set(x, 1);
    point.set(y, 33);
    return p256.verify(signature, message, point, { format: "der", lowS: false });
  }
  if (key.type_ === "EDDSA" && k.EC_OKP && /^ed25519$/i.test(k.EC_OKP.curve)) {
    const x = fromB64url(k.EC_OKP.x);
    if (x.length !== 32) throw new Error("its Ed25519 key is not 32 bytes");
    return ed25519.verify(signature, message, x, { zip215: false });
  }
  if (key.type_ === "RS256" && k.RSA) {
    const e = Array.isArray(k.RSA.e) ? Uint8Array.from(k.RSA.e) : fromB64url(k.RSA.e);
    const jwk = { kty: "RSA", n: b64url(fromB64url(k.RSA.n)), e: b64url(e), alg: "RS256", ext: true };
    const pub = await crypto.subtle.importKey("jwk", jwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["verify"]);
    return crypto.subtle.verify("RSASSA-PKCS1-v1_5", pub, signature, message);
  }
  throw new Error(`a ${key.type_} key: this page checks ES256, EdDSA and RS256 keys`);
}

// Asks the authenticator at hand for any passkey of `entries` over a fresh challenge and
// checks its answer against that entry's key: { entry, ok, why }.
export async function proveByPossession(entries) {
  if (!window.PublicKeyCredential) throw new Error("This browser has no passkeys (WebAuthn).");
  const rpId = location.hostname;
  const challenge = crypto.getRandomValues(new Uint8Array(32));
  const credential = await navigator.credentials.get({
    publicKey: {
      challenge,
      rpId,
      allowCredentials: entries.map((e) => ({ type: "public-key", id: fromB64url(e.id) })),
      userVerification: "required",
      timeout: 120000,
    },
  });
  if (!credential) throw new Error("No passkey answered.");
  const entry = entries.find((e) => b64url(fromB64url(e.id)) === b64url(credential.rawId));
  if (!entry) throw new Error("The authenticator answered with a passkey that is not in this file.");
  const r = credential.response;
  const clientData = new Uint8Array(r.clientDataJSON);
  const auth = new Uint8Array(r.authenticatorData);
  const fail = (why) => ({ entry, ok: false, why });
  let data;
  try {
    data = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(clientData));
  } catch (_) {
    return fail("its client data is not JSON");
  }
  if (data.type !== "webauthn.get") return fail("its client data is not an assertion's");
  if (data.challenge !== b64url(challenge)) return fail("it signed another challenge");
  if (data.origin !== location.origin) return fail(`it was made for ${data.origin}`);
  if (data.crossOrigin) return fail("it was made inside another site's frame");
  if (auth.length < 37 || !equal(auth.subarray(0, 32), sha256(new TextEncoder().encode(rpId)))) {
    return fail("it was made for another relying party");
  }
  const flags = auth[32];
  if ((flags & 0x05) !== 0x05) return fail("the authenticator did not verify the person (user verification)");
  // What the device checks too (webauthn-rs-core), so that a proven file is one the device
  // takes answers by.
  if (Boolean(flags & 0x08) !== entry.backupEligible) {
    return fail("the authenticator's backup eligibility is not the file's: the device would refuse its answers");
  }
  if (flags & 0x10 && !entry.backupEligible) {
    return fail("the passkey says it is backed up, but the file says it may not be: the device would refuse its answers");
  }
  const counter = new DataView(auth.buffer, auth.byteOffset + 33, 4).getUint32(0);
  if ((counter !== 0 || entry.counter !== 0) && counter <= entry.counter) {
    return fail(`the file's signature counter (${entry.counter}) is not below the authenticator's (${counter}): the device would refuse its answers`);
  }
  const signed = new Uint8Array(auth.length + 32);
  signed.set(auth);
  signed.set(sha256(clientData), auth.length);
  let ok;
  try {
    ok = await coseVerify(entry.key, signed, new Uint8Array(r.signature));
  } catch (e) {
    return fail(e.message);
  }
  return ok ? { entry, ok, why: "" } : fail("its signature does not verify under the file's public key for it");
}
