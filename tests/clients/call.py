"""One HTTPS request with Python requests, as a real client would make it.

usage: call.py URL CA [CERT KEY] [--token TOKEN]
Prints {"status": ..., "www_authenticate": ..., "body": ...} as JSON.
"""
import json
import sys

import requests


def main(argv):
    token = None
    if "--token" in argv:
        i = argv.index("--token")
        token = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    url, ca = argv[0], argv[1]
    cert = (argv[2], argv[3]) if len(argv) >= 4 else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(url, headers=headers, cert=cert, verify=ca, timeout=10)
    print(json.dumps({
        "status": response.status_code,
        "www_authenticate": response.headers.get("WWW-Authenticate"),
        "body": response.text,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
