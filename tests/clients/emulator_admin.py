"""The emulator's admin API for the client scripts: plain urllib, as a test in
any language would call it."""

import json
import urllib.request


def admin(endpoint, method, path, body=None):
    """One admin request; the HTTP status."""
    request = urllib.request.Request(
        endpoint + "/_emulator/" + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return response.status
