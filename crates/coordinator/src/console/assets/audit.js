// The audit log's device signatures checked in this browser, as `vsigner audit verify`
// checks them (crates/vsigner/src/commands/audit.rs; the formats are vsigner-records'):
// - each device record verifies under the key it names and names its device and
//   organisation;
// - each `device_statement` entry verifies under its device's signing key, for the
//   operation it is filed under;
// - each device action the log records (vote, failure, keygen, reshare and presign results,
//   accepted or refused signature) has a verified statement of that device for that
//   operation: an action the coordinator wrote without one is a problem.
// The devices' public keys are the coordinator's list, as for the CLI: compare them with
// your devices' own (`vsigner run` logs them) to rely on the result.
import { ed25519 } from "./vendor/noble-curves/ed25519.js";
import { concat, hexBytes } from "./eth.js";

const enc = new TextEncoder();
// A JSON value as the CLI reads it as text (`text` in crates/vsigner/src/operator.rs).
const text = (x) => (typeof x === "string" ? x : "-");
const RECORD_DOMAIN = enc.encode("vsigner/device-record/v1\0");
const STATEMENT_DOMAIN = enc.encode("vsigner/device-statement/v1\0");

const bytes = (s) => hexBytes(s);

const u32 = (n) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};
// A length-prefixed field (u32 big-endian length).
const field = (b) => concat([u32(b.length), b]);
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
// noble's RFC 8032 verification (zip215: false); the CLI uses ed25519-dalek's
// verify_strict. They can differ only on signatures made with the device's own key.
const verify = (signature, message, key) => {
  try {
    return ed25519.verify(signature, message, key, { zip215: false });
  } catch (_) {
    return false;
  }
};

// A device record (`SignedDeviceRecord::to_bytes`): "VSDR" ‖ 1 ‖ u8 len ‖ organisation ‖
// u8 len ‖ device ‖ signing key ‖ encryption key ‖ revision (u64) ‖ signature.
function parseRecord(b) {
  let at = 0;
  const take = (n) => {
    if (at + n > b.length) throw new Error("truncated");
    const out = b.subarray(at, at + n);
    at += n;
    return out;
  };
  if (!same(take(4), enc.encode("VSDR")) || take(1)[0] !== 1) throw new Error("not a device record");
  const name = () => new TextDecoder("utf-8", { fatal: true }).decode(take(take(1)[0]));
  const organisation = name();
  const device = name();
  const signingKey = take(32);
  const encryptionKey = take(32);
  const revision = take(8);
  const signature = take(64);
  if (at !== b.length) throw new Error("trailing bytes");
  const signed = concat([RECORD_DOMAIN, field(enc.encode(organisation)), field(enc.encode(device)), signingKey, encryptionKey, revision]);
  return { organisation, device, signingKey, signature, signed };
}

// The bytes a device's statement signature covers (`Statement::signed_bytes`).
function statementBytes(organisation, operation, device, kind, content) {
  return concat([
    STATEMENT_DOMAIN,
    field(enc.encode(organisation)),
    field(enc.encode(operation)),
    field(enc.encode(device)),
    field(enc.encode(kind)),
    u32(content.length),
    ...content.map((c) => field(enc.encode(c))),
  ]);
}

const KINDS = ["vote", "start", "failure", "keygen_result", "reshare_result", "presign_result", "signature", "discard_presignatures"];
const ACTION_KINDS = new Map(Object.entries({
  vote: "vote",
  failure: "failure",
  keygen_result: "keygen_result",
  reshare_result: "reshare_result",
  presign_result: "presign_result",
  signature_accepted: "signature",
  signature_refused: "signature",
}));

// Checks { organisationId, devices: [{id, identitySigningKey, record}], auditLog: [...] };
// returns { statements, records, actions, problems }.
export function verifyAudit(exported) {
  const org = String(exported.organisationId);
  const problems = [];
  const keys = new Map();
  let records = 0;
  for (const d of exported.devices || []) {
    let key;
    try {
      key = bytes(d.identitySigningKey);
      if (key.length !== 32) throw new Error();
    } catch (_) {
      problems.push(`device ${d.id}: its signing key is not 32 bytes of hex`);
      continue;
    }
    keys.set(d.id, key);
    if (d.record !== null && d.record !== undefined) {
      try {
        const r = parseRecord(bytes(d.record));
        if (!verify(r.signature, r.signed, r.signingKey)) problems.push(`device ${d.id}: its record does not verify`);
        else if (r.device !== d.id || !same(r.signingKey, key) || r.organisation !== org) {
          problems.push(`device ${d.id}: its record names another device, organisation or key`);
        } else records += 1;
      } catch (e) {
        problems.push(`device ${d.id}: its record does not verify (${e.message})`);
      }
    }
  }
  const signed = new Set();
  let statements = 0;
  const log = exported.auditLog || [];
  for (const e of log.filter((e) => e.event === "device_statement")) {
    const [device, op] = [text(e.actor), text(e.entityId)];
    let detail = {};
    try {
      detail = JSON.parse(text(e.detail));
    } catch (_) {
      detail = {};
    }
    if (!detail || typeof detail !== "object" || Array.isArray(detail)) detail = {};
    if (!KINDS.includes(detail.kind)) {
      problems.push(`entry ${e.seq}: a device statement of unknown kind`);
      continue;
    }
    const key = keys.get(device);
    if (!key) {
      problems.push(`entry ${e.seq}: a statement of device ${device}, which the coordinator does not list`);
      continue;
    }
    const content = Array.isArray(detail.content) ? detail.content.map(text) : [];
    let ok = false;
    try {
      const signature = bytes(text(detail.signature));
      ok = signature.length === 64 && verify(signature, statementBytes(org, op, device, detail.kind, content), key);
    } catch (_) {
      ok = false;
    }
    if (ok) {
      statements += 1;
      signed.add(JSON.stringify([device, op, detail.kind]));
    } else {
      problems.push(`entry ${e.seq}: the ${detail.kind} statement of device ${device} on ${op} is not signed by the device`);
    }
  }
  let actions = 0;
  for (const e of log) {
    const kind = ACTION_KINDS.get(e.event);
    if (!kind || typeof e.actor !== "string" || !keys.has(e.actor)) continue;
    if (signed.has(JSON.stringify([e.actor, text(e.entityId), kind]))) actions += 1;
    else problems.push(`entry ${e.seq}: ${e.event} of device ${e.actor} on ${e.entityId} has no statement signed by the device`);
  }
  return { statements, records, actions, problems };
}
