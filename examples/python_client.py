#!/usr/bin/env python3
"""The whole RFC 8705 flow with Python `requests`: get a certificate-bound access token
from the token service over mutual TLS, then call the resource server with it, over
mutual TLS with the same certificate.

    python3 examples/python_client.py \\
        --token-url https://localhost:9443/token \\
        --resource-url https://localhost:8443/whoami \\
        --cert client-a.crt --key client-a.key --ca ca.crt \\
        --client-id client-a --scope read

Prints what happens, then the resource server's JSON answer. Exits 0 only when both
requests succeed; 1 when a server refuses; 2 when a server cannot be reached or the
inputs cannot be read.
"""

import argparse
import base64
import hashlib
import json
import re
import ssl
import sys

import requests

TIMEOUT = 10


class Failure(Exception):
    """A step that did not work; `code` is the exit code."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def thumbprint(cert_path):
    """RFC 8705 `x5t#S256` of the first certificate in a PEM file."""
    try:
        with open(cert_path, encoding="ascii") as f:
            pem = f.read()
    except OSError as e:
        raise Failure(f"cannot read --cert {cert_path}: {e}", 2) from e
    first = re.search(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL
    )
    if not first:
        raise Failure(f"--cert {cert_path} holds no PEM certificate", 2)
    der = ssl.PEM_cert_to_DER_cert(first.group(0))
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def jwt_part(token, index):
    """A JWT's header (0) or claims (1): base64url JSON, readable by anyone."""
    try:
        part = token.split(".")[index]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError) as e:
        raise Failure(f"the access token is not a JWT: {e}") from e


def describe_error(response):
    """`error: description` of an RFC 6749 / RFC 6750 refusal."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        text = body["error"]
        if body.get("error_description"):
            text += f": {body['error_description']}"
        return text
    challenge = response.headers.get("WWW-Authenticate")
    if challenge:
        return f"WWW-Authenticate: {challenge}"
    return response.text.strip()[:200] or "(empty body)"


def request(method, url, what, **kwargs):
    """One request; network and TLS problems become a Failure."""
    try:
        return requests.request(method, url, timeout=TIMEOUT, **kwargs)
    except requests.exceptions.SSLError as e:
        raise Failure(f"{what}: the TLS handshake failed: {e}", 2) from e
    except requests.exceptions.RequestException as e:
        raise Failure(f"{what}: {e}", 2) from e


def run(args):
    cert = (args.cert, args.key)
    mine = thumbprint(args.cert)
    print(f"Client certificate {args.cert}")
    print(f"  thumbprint (x5t#S256) {mine}")

    # 1. The token request: the certificate is the client's only credential.
    form = {"grant_type": "client_credentials", "client_id": args.client_id}
    if args.scope:
        form["scope"] = args.scope
    print(f"\n1. POST {args.token_url} as {args.client_id}, over mutual TLS")
    print(f"   grant_type=client_credentials, scope={args.scope or '(the registered ones)'}")
    response = request(
        "POST", args.token_url, "token request", data=form, cert=cert, verify=args.ca
    )
    print(f"   <- {response.status_code} {response.reason}")
    if response.status_code != 200:
        raise Failure(f"the token service refused: {describe_error(response)}")
    try:
        answer = response.json()
        token = answer["access_token"]
    except (ValueError, KeyError, TypeError) as e:
        raise Failure(f"the token response is not an RFC 6749 §5.1 answer: {e}") from e
    if str(answer.get("token_type", "")).lower() != "bearer":
        raise Failure(f"unexpected token_type {answer.get('token_type')!r}")
    claims = jwt_part(token, 1)
    bound_to = (claims.get("cnf") or {}).get("x5t#S256")
    print(
        f"   a Bearer token, expires in {answer.get('expires_in')} s, "
        f"scope {answer.get('scope')!r}"
    )
    print(f"   iss {claims.get('iss')}, aud {claims.get('aud')}, sub {claims.get('sub')}")
    print(f"   cnf.x5t#S256 {bound_to}")
    if bound_to != mine:
        raise Failure("the token is not bound to this certificate")
    print("   the token is bound to this certificate")

    # 2. The protected call: the same certificate, and the token.
    print(f"\n2. GET {args.resource_url} with the token, over mutual TLS")
    response = request(
        "GET",
        args.resource_url,
        "resource request",
        headers={"Authorization": f"Bearer {token}"},
        cert=cert,
        verify=args.ca,
    )
    print(f"   <- {response.status_code} {response.reason}")
    if response.status_code != 200:
        raise Failure(f"the resource server refused: {describe_error(response)}")
    try:
        body = response.json()
    except ValueError as e:
        raise Failure(f"the resource server's answer is not JSON: {e}") from e
    print("\nThe resource server's answer:")
    print(json.dumps(body, indent=2, sort_keys=True))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Get a certificate-bound token (RFC 8705) and use it."
    )
    parser.add_argument("--token-url", required=True, help="the token endpoint")
    parser.add_argument("--resource-url", required=True, help="the protected resource")
    parser.add_argument("--cert", required=True, help="client certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--ca", required=True, help="CA bundle for the servers (PEM)")
    parser.add_argument("--client-id", required=True, help="the registered client_id")
    parser.add_argument("--scope", help="space-separated scopes to ask for")
    args = parser.parse_args(argv)
    try:
        run(args)
    except Failure as failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        return failure.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
