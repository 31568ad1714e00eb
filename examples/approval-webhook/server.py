#!/usr/bin/env python3
"""A sample approval webhook for vsigner (ApprovalMode = API), io.finnet-compatible.

- Verifies vsigner's RFC 9421 request signature (Signature-Input / Signature, Ed25519,
  Content-Digest per RFC 9530) when device public keys are given with --device; a request
  without a valid signature gets 401 and no vote.
- Decides with a policy:
    * reject a sign request whose amount (transaction value in wei) is above --max-wei;
    * reject when the vault name or the signed message contains "REJECT";
    * abstain when the vault name or the signed message contains "ABSTAIN";
    * approve otherwise.
- Replies {"status": "approved"|"rejected"|"abstain", "nonce": N} signed the io.finnet way:
    digest: SHA-512=<base64(SHA-512(body))>
    Signature: keyId="eddsa-key",algorithm="hs2019",headers="content-type digest",signature="<b64>"
  where the signature is Ed25519 over b"content-type: application/json\\ndigest: SHA-512=<b64>".

Prints one JSON line on stdout when listening:
  {"port": P, "approvalHTTPPublicKeyHex": "<hex of the PEM text of the reply key>"}
Put that hex in vsigner's ApprovalHTTPPublicKeyHex.

Standard library + `cryptography` only. Usage:
  server.py [--host 127.0.0.1] [--port 0] [--reply-key key.pem] [--max-wei N]
            [--device KEYID=ED25519_PUBLIC_KEY_HEX ...] [--public-url https://approver.example]
"""

import argparse
import base64
import hashlib
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

REQUIRED_COMPONENTS = ["@method", "@target-uri", "content-type", "content-digest", "vs-nonce"]
MAX_CLOCK_SKEW = 300  # seconds
MAX_BODY = 1 << 20


class RequestSignatureError(Exception):
    pass


def parse_signature_input(value):
    """`label=("c1" "c2");created=1;keyid="k";alg="ed25519"` -> (label, components, params, raw)."""
    m = re.fullmatch(r'\s*([a-z*][a-z0-9_.*-]*)=(\(([^)]*)\)(.*))\s*', value)
    if not m:
        raise RequestSignatureError("malformed Signature-Input")
    label, raw, inner, rest = m.group(1), m.group(2), m.group(3), m.group(4)
    components = re.findall(r'"([^"]*)"', inner)
    params = {}
    for p in filter(None, rest.split(";")):
        k, _, v = p.partition("=")
        params[k.strip()] = v.strip().strip('"')
    return label, components, params, raw


def verify_request(handler, body, devices, public_url):
    """Verifies vsigner's RFC 9421 signature; returns the key id. Raises RequestSignatureError."""
    h = handler.headers
    sig_input, sig = h.get("Signature-Input"), h.get("Signature")
    if not sig_input or not sig:
        raise RequestSignatureError("the request is not signed (no Signature-Input/Signature)")
    label, components, params, raw_params = parse_signature_input(sig_input)
    missing = [c for c in REQUIRED_COMPONENTS if c not in components]
    if missing:
        raise RequestSignatureError("the signature does not cover %s" % missing)
    if params.get("alg") != "ed25519":
        raise RequestSignatureError("alg is not ed25519")
    try:
        created = int(params["created"])
    except (KeyError, ValueError):
        raise RequestSignatureError("no created parameter")
    if abs(time.time() - created) > MAX_CLOCK_SKEW:
        raise RequestSignatureError("created is too far from now")
    keyid = params.get("keyid")
    if keyid not in devices:
        raise RequestSignatureError("unknown keyid %r" % keyid)
    # RFC 9530: the body must match its digest.
    digest = "sha-512=:%s:" % base64.b64encode(hashlib.sha512(body).digest()).decode()
    if (h.get("Content-Digest") or "").strip() != digest:
        raise RequestSignatureError("Content-Digest does not match the body")
    base = (public_url or "http://" + (h.get("Host") or "")).rstrip("/")
    lines = []
    for c in components:
        if c == "@method":
            v = handler.command
        elif c == "@target-uri":
            v = base + handler.path
        elif c.startswith("@"):
            raise RequestSignatureError("unsupported component %s" % c)
        else:
            v = h.get(c)
            if v is None:
                raise RequestSignatureError("covered header %s is missing" % c)
            v = v.strip()
        lines.append('"%s": %s' % (c, v))
    lines.append('"@signature-params": %s' % raw_params)
    signature_base = "\n".join(lines).encode()
    m = re.fullmatch(r'\s*%s=:([A-Za-z0-9+/=]+):\s*' % re.escape(label), sig)
    if not m:
        raise RequestSignatureError("malformed Signature")
    try:
        devices[keyid].verify(base64.b64decode(m.group(1)), signature_base)
    except (InvalidSignature, ValueError):
        raise RequestSignatureError("the request signature does not verify")
    return keyid


def contains_marker(body, marker):
    vault = ((body.get("details") or {}).get("vault") or {}).get("details") or {}
    if marker in str(vault.get("name", "")):
        return True
    sd = body.get("signingData") or {}
    if sd.get("payloadKind") == "message":
        try:
            return marker.encode() in bytes.fromhex(sd.get("dataHex", ""))
        except ValueError:
            return False
    return False


def decide(body, max_wei):
    """The policy. Returns (status, why)."""
    if body.get("__typename") == "OperationTransferOut_v3":
        amount = body.get("amountOriginal")
        if amount is None:
            return "rejected", "the transaction's amount is unknown (a call vsigner does not decode)"
        if body.get("asset"):
            return "rejected", "a token transfer: this example's limit is for the chain's own coin"
        if int(amount) > max_wei:
            return "rejected", "amount %s wei is above the limit %d" % (amount, max_wei)
    if contains_marker(body, "REJECT"):
        return "rejected", "REJECT marker"
    if contains_marker(body, "ABSTAIN"):
        return "abstain", "ABSTAIN marker"
    return "approved", "policy allows it"


def nonce_of(headers):
    n = headers.get("VS-Nonce")
    if n is None:
        m = re.search(r"nonce=([0-9]+);", headers.get("Accept-Signature", ""))
        n = m.group(1) if m else None
    return int(n) if n is not None else None


def make_handler(reply_key, devices, max_wei, public_url):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("approval-webhook: " + (fmt % args) + "\n")

        def send(self, code, obj):
            body = json.dumps(obj, separators=(",", ":")).encode()
            digest = "SHA-512=" + base64.b64encode(hashlib.sha512(body).digest()).decode()
            signed = ("content-type: application/json\ndigest: " + digest).encode()
            sig = base64.b64encode(reply_key.sign(signed)).decode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("digest", digest)
            self.send_header(
                "Signature",
                'keyId="eddsa-key",algorithm="hs2019",headers="content-type digest",signature="%s"' % sig,
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self.send(413, {"error": "body too large"})
            body = self.rfile.read(length)
            if devices:
                try:
                    keyid = verify_request(self, body, devices, public_url)
                except RequestSignatureError as e:
                    self.log_message("refused: %s", e)
                    return self.send(401, {"error": str(e)})
            else:
                keyid = None
            nonce = nonce_of(self.headers)
            if nonce is None:
                return self.send(400, {"error": "no VS-Nonce"})
            try:
                op = json.loads(body)
            except ValueError:
                return self.send(400, {"error": "body is not JSON"})
            status, why = decide(op, max_wei)
            self.log_message("%s %s from %s: %s (%s)", op.get("__typename"), op.get("id"), keyid, status, why)
            self.send(200, {"status": status, "nonce": nonce})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--reply-key", help="PEM Ed25519 private key signing replies (default: a fresh one)")
    ap.add_argument("--max-wei", type=int, default=10**18, help="largest transaction value approved (wei)")
    ap.add_argument("--device", action="append", default=[], metavar="KEYID=PUBHEX",
                    help="a vsigner device allowed to ask (Ed25519 public key, 32 bytes hex); "
                         "when given, unsigned or badly signed requests are refused")
    ap.add_argument("--public-url", help="scheme://host[:port] as vsigner sees this server (for @target-uri)")
    a = ap.parse_args()

    if a.reply_key:
        with open(a.reply_key, "rb") as f:
            reply_key = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(reply_key, Ed25519PrivateKey):
            sys.exit("--reply-key is not an Ed25519 key")
    else:
        reply_key = Ed25519PrivateKey.generate()
    pem = reply_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    devices = {}
    for d in a.device:
        keyid, _, pub = d.partition("=")
        devices[keyid] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub))

    if not devices:
        sys.stderr.write("approval-webhook: WARNING: no --device given, requests are NOT authenticated\n")
    server = ThreadingHTTPServer((a.host, a.port), make_handler(reply_key, devices, a.max_wei, a.public_url))
    print(json.dumps({"port": server.server_address[1], "approvalHTTPPublicKeyHex": pem.hex()}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
