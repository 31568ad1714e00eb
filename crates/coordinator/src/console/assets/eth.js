// Ethereum transactions for the console, in plain JavaScript with no dependency (a module
// the page imports, and that crates/vsigner/tests/daemon/console.rs checks against alloy's
// decoder). Amounts are decimal strings (ETH, gwei), turned into integers exactly.

// RLP (Ethereum's recursive length prefix) of bytes and lists.
export function rlp(item) {
  const concat = (parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
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

export function hexBytes(s, what) {
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
  return `0x${[...out].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}
