"""Microsoft 365 app-only tokens through MSAL, against a token service the test serves over
TLS on loopback (no network): the grant and scope asked for, a secret or a certificate,
an error reported with the service's reason, a refused token fetched afresh."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from mailgate.config import OAuth2Config
from mailgate.errors import LoginFailed
from mailgate.ops.oauth import MICROSOFT_SCOPE, MicrosoftTokens


class TokenService:
    """A tenant's discovery document and token endpoint; records every token request."""

    def __init__(self, directory: Path) -> None:
        self.cert = directory / "service.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(self.cert), "-out", str(self.cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        self.requests: list[dict[str, list[str]]] = []
        self.error: dict[str, str] | None = None
        service = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                base = f"{service.url}/tenant-1"
                self.reply(200, {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                })  # fmt: skip

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                service.requests.append(parse_qs(body))
                if service.error is not None:
                    self.reply(401, service.error)
                else:
                    n = len(service.requests)
                    self.reply(200, {"access_token": f"ms-token-{n}", "expires_in": 3600,
                                     "token_type": "Bearer"})  # fmt: skip

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenService]:
    running = TokenService(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(running.cert))  # trust the test's service
    yield running
    running.close()


def settings(service: TokenService, **changes: Any) -> OAuth2Config:
    values: dict[str, Any] = {
        "provider": "microsoft", "tenant": "tenant-1", "client_id": "app-1",
        "client_secret": "s3cret", "authority": service.url, "timeout": 10.0,
    }  # fmt: skip
    return OAuth2Config(**{**values, **changes})


def test_a_client_secret_gets_a_token_for_exchange_online(service: TokenService) -> None:
    tokens = MicrosoftTokens("hosted", settings(service))
    assert tokens.token() == "ms-token-1"
    assert tokens.token() == "ms-token-1"  # kept until shortly before it expires
    assert tokens.token(fresh=True) == "ms-token-2"  # a refused one is asked for again
    asked = service.requests[0]
    assert asked["grant_type"] == ["client_credentials"]
    assert MICROSOFT_SCOPE in asked["scope"][0].split()
    assert (asked["client_id"], asked["client_secret"]) == (["app-1"], ["s3cret"])


def test_a_certificate_signs_the_client_assertion(service: TokenService, tmp_path: Path) -> None:
    pem = tmp_path / "app.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=mailgate", "-keyout", str(pem), "-out", str(pem)],
        check=True, capture_output=True,
    )  # fmt: skip
    tokens = MicrosoftTokens("hosted", settings(service, client_secret="", certificate=pem))
    assert tokens.token() == "ms-token-1"
    asked = service.requests[0]
    assert "client_secret" not in asked
    assert asked["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    header = asked["client_assertion"][0].split(".")[0]
    assert "x5t" in json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))


def test_an_error_of_the_token_service_is_reported_with_its_reason(
    service: TokenService,
) -> None:
    service.error = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1",
    }
    with pytest.raises(LoginFailed) as refused:
        MicrosoftTokens("hosted", settings(service)).token()
    assert str(refused.value) == (
        "hosted: Microsoft token endpoint: invalid_client: "
        "AADSTS7000215: Invalid client secret provided."
    )
