"""Google Workspace tokens through google-auth: a service account with domain-wide
delegation impersonating the support mailbox, against a token endpoint the test serves
on loopback (no network): the grant, scope and subject asked for, an error's reason."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from mailgate.errors import LoginFailed
from mailgate.ops.oauth import GOOGLE_SCOPE, GoogleTokens


class TokenEndpoint:
    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        self.error: dict[str, str] | None = None
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                endpoint.requests.append(parse_qs(body))
                n = len(endpoint.requests)
                answer: dict[str, Any] = endpoint.error or {
                    "access_token": f"g-token-{n}", "expires_in": 3600, "token_type": "Bearer"
                }  # fmt: skip
                data = json.dumps(answer).encode()
                self.send_response(400 if endpoint.error else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    running = TokenEndpoint()
    yield running
    running.server.shutdown()
    running.server.server_close()


def key_file(directory: Path, token_uri: str) -> Path:
    """A service account's JSON key, as the Google Cloud console hands it out."""
    pem = directory / "sa.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-out", str(pem)],
        check=True, capture_output=True,
    )  # fmt: skip
    info = {
        "type": "service_account", "project_id": "desk", "private_key_id": "k1",
        "private_key": pem.read_text(), "client_email": "mailgate@desk.iam.gserviceaccount.com",
        "client_id": "123", "token_uri": token_uri,
    }  # fmt: skip
    path = directory / "sa.json"
    path.write_text(json.dumps(info))
    return path


def claims(assertion: str) -> dict[str, Any]:
    payload = assertion.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_service_account_impersonates_the_mailbox_for_mail(
    endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    tokens = GoogleTokens("hosted", key_file(tmp_path, endpoint.url), "support@example.com")
    assert tokens.token() == "g-token-1"
    assert tokens.token() == "g-token-1"  # kept while valid
    assert tokens.token(fresh=True) == "g-token-2"
    asked = endpoint.requests[0]
    assert asked["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    said = claims(asked["assertion"][0])
    assert said["sub"] == "support@example.com" and said["scope"] == GOOGLE_SCOPE
    assert said["iss"] == "mailgate@desk.iam.gserviceaccount.com"


def test_an_error_of_the_token_endpoint_is_reported_with_its_reason(
    endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    endpoint.error = {
        "error": "unauthorized_client",
        "error_description": "Client is unauthorized to retrieve access tokens using this method.",
    }
    tokens = GoogleTokens("hosted", key_file(tmp_path, endpoint.url), "support@example.com")
    with pytest.raises(LoginFailed) as refused:
        tokens.token()
    assert str(refused.value).startswith("hosted: Google token endpoint: ")
    assert "unauthorized_client" in str(refused.value)
