"""An approval handler written the way io.finnet's published samples are
(API_approvals/examples/lambda-python/app.py and lambda-js/lambda-example.js of
IoFinnet/io-vault-virtual-signer-docs): this test's own code, copying their logic, not their
text. The handler gets the request headers with the names exactly as sent (as AWS Lambda
hands them over), switches on `__typename`, reads the fields at io.finnet's paths and signs
its reply as the samples do: `Signature: keyId="eddsa-key",algorithm="hs2019",
headers="content-type digest",signature="<base64>"` over
`content-type: application/json\\ndigest: SHA-512=<base64>`.

--nonce accept-signature: the Python sample's way (regex `nonce=([0-9]+);` on the
Accept-Signature header, looked up as "Accept-Signature" or "accept-signature").
--nonce vs-nonce: the JavaScript sample's way (`headers['VS-Nonce']`, exact case).

Prints {"port": N, "approvalHTTPPublicKeyHex": "..."} on its first line, then serves.
Each request's verdict is appended to the JSON lines file given by --log.
"""

import argparse
import base64
import hashlib
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def decide(body):
    """The samples' rules: returns True to approve."""
    match body["__typename"]:
        case "OperationCreateVault_v3":
            if body["voting"] and body["voting"]["votes"] and any(
                "fq" in vote["device"]["id"] for vote in body["voting"]["votes"]
            ):
                return False
            if (
                body["details"]
                and body["details"]["vault"]
                and body["details"]["vault"]["details"]
                and "malicious" in body["details"]["vault"]["details"]["name"]
            ):
                return False
        case "OperationReshare_v3":
            if body["rDetails"] and body["rDetails"]["newThreshold"] and body["rDetails"]["newThreshold"] == 7:
                return False
        case "OperationSign":
            if (
                body["details"]
                and body["details"]["vault"]
                and body["details"]["vault"]["details"]
                and "malicious" in body["details"]["vault"]["details"]["name"]
            ):
                return False
            if body["signingData"] and body["signingData"]["data"] and "malicious" in body["signingData"]["data"]:
                return False
        case "OperationTransferOut_v3":
            # The older Azure sample's rule: an amount containing 666 is refused.
            if "666" in body["amountOriginal"]:
                return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nonce", choices=["accept-signature", "vs-nonce"], required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def fail(self, msg):
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(msg.encode())

        def do_POST(self):
            # The names exactly as they came on the wire, as Lambda passes them.
            headers = {name: value for name, value in self.headers.items()}
            if args.nonce == "vs-nonce":
                nonce = headers.get("VS-Nonce")
                if nonce is None:
                    return self.fail("VS-Nonce not in request")
            else:
                if "Accept-Signature" not in headers and "accept-signature" not in headers:
                    return self.fail("Accept-Signature not in request")
                acc = headers.get("Accept-Signature") or headers.get("accept-signature")
                m = re.search("nonce=([0-9]+);", acc)
                if not m:
                    return self.fail("nonce not found")
                nonce = m.group(1)
            body = json.loads(self.rfile.read(int(headers.get("Content-Length") or headers.get("content-length") or 0)))
            if "__typename" not in body:
                return self.fail("__typename not in request")
            approve = decide(body)
            with open(args.log, "a") as f:
                f.write(json.dumps({"typename": body["__typename"], "approve": approve, "names": list(headers)}) + "\n")
            decision = json.dumps({"status": "approved" if approve else "rejected", "nonce": int(nonce)})
            digest = base64.b64encode(hashlib.sha512(decision.encode("ascii")).digest()).decode("ascii")
            message = "content-type: application/json\ndigest: SHA-512=" + digest
            signature = base64.b64encode(key.sign(message.encode("utf-8"))).decode("ascii")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header(
                "Signature",
                'keyId="eddsa-key",algorithm="hs2019",headers="content-type digest",signature="%s"' % signature,
            )
            self.send_header("digest", "SHA-512=" + digest)
            self.send_header("Content-Length", str(len(decision)))
            self.end_headers()
            self.wfile.write(decision.encode("ascii"))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": server.server_address[1], "approvalHTTPPublicKeyHex": pem.hex()}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
