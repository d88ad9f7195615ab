"""Schemathesis hooks of `make test-api` and `make fuzz-api` (mk/api.mk, tools/api_test.py).

Two hooks, for what `cargo lambda watch`, the local stand-in for API Gateway, cannot carry to a
function: it answers such a request itself, 500 `{"type":"https://httpstatuses.com/500",...}`
as text/plain, and no function runs. Rather than drop those requests, the hooks send them with
the offending bytes replaced, so that the functions still get a body that is not JSON or a header
that is no credential, and must refuse it. shared/tests/openapi.rs hands the functions the
original bytes in process, and holds their answers (400 invalid_json, 401 invalid_token) to
openapi.yaml.
"""

import schemathesis

REPLACEMENT = "?"


@schemathesis.hook
def map_body(context, body):
    """A body of bytes that are not UTF-8 is sent with those bytes replaced by U+FFFD.

    Schemathesis sometimes sends random bytes that are not JSON, as `application/json`; watch
    cannot put bytes that are not UTF-8 into the event it builds.
    """
    if isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace").encode("utf-8")
    return body


def _printable(value):
    if not isinstance(value, str):
        return value
    return "".join(c if c == "\t" or " " <= c <= "~" else REPLACEMENT for c in value)


@schemathesis.hook
def map_headers(context, headers):
    """A header value with characters outside printable ASCII has them replaced by `?`.

    In negative mode schemathesis puts Latin-1 characters in header values (a session token of
    `abc\\xe9`, say): watch cannot put them into the event (500, as above), and the HTTP server in
    front of it refuses a control character with an empty 400 of its own.
    """
    if not headers:
        return headers
    return {name: _printable(value) for name, value in headers.items()}
