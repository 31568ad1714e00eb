// Ethereum transactions for the console, in plain JavaScript with no dependency (a module
// the page imports, and that crates/vsigner/tests/daemon/console.rs checks against alloy's
// decoder). Amounts are decimal strings (ETH, gwei), turned into integers exactly.

// The bytes of `parts` one after another.
export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// RLP (Ethereum's recursive length prefix) of bytes and lists.
export function rlp(item) {
  const length = (n, offset) => {
    if (n < 56) return Uint8Array.of(offset + n);
    const bytes = bigBytes(BigInt(n));
    return concat([Uint8Array.of(offset + 55 + bytes.length), bytes]);
  };
  if (Array.isArray(item)) {
    const body = concat(item.map(rlp));
    return concat([length(body.length, 0xc0), body]);
  }
  if (item.length === 1 && item[0] < 0x80) return item;
  return concat([length(item.length, 0x80), item]);
}

// A non-negative integer's minimal big-endian bytes (0 is empty).
export function bigBytes(n) {
  if (n < 0n) throw new Error("negative number");
  let hex = n.toString(16);
  if (n === 0n) return new Uint8Array(0);
  if (hex.length % 2) hex = `0${hex}`;
  return Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));
}

// Lowercase hex of bytes (no 0x).
export const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

// Bytes of a hex string (0x optional); `what` names it in the error.
export function hexBytes(s, what = "the value") {
  if (typeof s !== "string") throw new Error(`${what} is not hex`);
  const hex = s.trim().replace(/^0x/, "");
  if (hex.length % 2 || !/^[0-9a-fA-F]*$/.test(hex)) throw new Error(`${what} is not hex`);
  return Uint8Array.from(hex.match(/../g) || [], (b) => parseInt(b, 16));
}

// A decimal amount in units of 10^-decimals, as an integer (e.g. ETH to wei).
export function units(s, decimals, what) {
  const m = s.trim().match(/^(\d+)(?:\.(\d+))?$/);
  if (!m || (m[2] || "").length > decimals) throw new Error(`${what} is not a number with at most ${decimals} decimals`);
  return BigInt(m[1]) * 10n ** BigInt(decimals) + BigInt((m[2] || "").padEnd(decimals, "0") || "0");
}

// The unsigned EIP-1559 transaction 0x02 ‖ rlp([chainId, nonce, maxPriorityFee, maxFee,
// gas, to, value, data, accessList]) that the vault signs, as 0x-hex. `f`: {to, value
// (ETH), chain, nonce, gas, fee and tip (gwei), data (hex)}, all strings.
// A whole number written in decimal digits (no sign, no hex, no exponent).
function whole(s, what, min = 0n) {
  const t = String(s).trim();
  if (!/^\d+$/.test(t)) throw new Error(`${what} must be a whole number in decimal digits`);
  const n = BigInt(t);
  if (n < min) throw new Error(`${what} must be at least ${min}`);
  return n;
}

export function eip1559(f) {
  const to = hexBytes(f.to, "the recipient");
  if (to.length !== 20) throw new Error("the recipient must be a 20-byte address (0x + 40 hex digits)");
  const fields = [
    bigBytes(whole(f.chain, "the chain id", 1n)),
    bigBytes(whole(f.nonce, "the nonce")),
    bigBytes(units(f.tip, 9, "the priority fee")),
    bigBytes(units(f.fee, 9, "the fee cap")),
    bigBytes(whole(f.gas, "the gas limit", 21000n)),
    to,
    bigBytes(units(f.value, 18, "the amount")),
    hexBytes(f.data, "the data"),
    [],
  ];
  const body = rlp(fields);
  const out = new Uint8Array(body.length + 1);
  out[0] = 2;
  out.set(body, 1);
  return `0x${toHex(out)}`;
}

// RLP decoding (the inverse of `rlp`): bytes as Uint8Array, lists as arrays.
export function rlpDecode(bytes) {
  const [item, end] = rlpAt(bytes, 0);
  if (end !== bytes.length) throw new Error("bytes after the RLP item");
  return item;
}

function rlpAt(b, at) {
  if (at >= b.length) throw new Error("truncated RLP");
  const p = b[at];
  const span = (start, length) => {
    if (start + length > b.length) throw new Error("truncated RLP");
    return [start, length];
  };
  const long = (n) => {
    const [start] = span(at + 1, n);
    let length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + b[start + i];
    return span(start + n, length);
  };
  if (p < 0x80) return [b.subarray(at, at + 1), at + 1];
  if (p < 0xc0) {
    const [start, length] = p < 0xb8 ? span(at + 1, p - 0x80) : long(p - 0xb7);
    return [b.subarray(start, start + length), start + length];
  }
  const [start, length] = p < 0xf8 ? span(at + 1, p - 0xc0) : long(p - 0xf7);
  const items = [];
  let i = start;
  while (i < start + length) {
    const [item, next] = rlpAt(b, i);
    items.push(item);
    i = next;
  }
  if (i !== start + length) throw new Error("an RLP list overruns its length");
  return [items, start + length];
}

// The signed EIP-1559 transaction of an unsigned one (`0x02 ‖ rlp(fields)`, bytes) with a
// 64-byte r ‖ s signature and its y parity: 0x02 ‖ rlp(fields ++ [yParity, r, s]).
export function signedEip1559(unsigned, yParity, signature) {
  if (unsigned[0] !== 2) throw new Error("not an EIP-1559 transaction");
  const fields = rlpDecode(unsigned.subarray(1));
  if (!Array.isArray(fields) || fields.length !== 9) throw new Error("not an EIP-1559 transaction's fields");
  const scalar = (part) => bigBytes(BigInt(`0x${toHex(part) || "0"}`));
  const body = rlp([...fields, bigBytes(BigInt(yParity)), scalar(signature.subarray(0, 32)), scalar(signature.subarray(32, 64))]);
  const out = new Uint8Array(body.length + 1);
  out[0] = 2;
  out.set(body, 1);
  return out;
}
