"""TLS from the --ssl-* options and from ssl_context_factory, with certificates made by trustme."""

from __future__ import annotations

import signal
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulmen import Config
from tests import apps
from tests.conftest import free_port, run_server

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return str(certfile), str(keyfile), str(cafile)


def _client_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def test_https_with_ssl_options(cert_files: tuple[str, str, str]) -> None:
    certfile, keyfile, cafile = cert_files
    with run_server(apps.scope_json, ssl_certfile=certfile, ssl_keyfile=keyfile) as server:
        url = f"https://127.0.0.1:{server.port}/"
        response = httpx.get(url, verify=_client_context(cafile), timeout=5)
        assert response.status_code == 200
        assert response.json()["scheme"] == "https"
        assert server.config.is_ssl and isinstance(server.config.ssl, ssl.SSLContext)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/", timeout=2)  # plain HTTP is not served


def test_encrypted_key_with_password(ca: Any, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    ca.cert_pem.write_to_path(str(cafile))
    with run_server(
        apps.hello, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile), ssl_keyfile_password="s3cret"
    ) as server:
        response = httpx.get(
            f"https://127.0.0.1:{server.port}/", verify=_client_context(str(cafile)), timeout=5
        )
        assert response.text == "Hello, world!"


def test_client_certificates_required(ca: Any, cert_files: tuple[str, str, str], tmp_path: Path) -> None:
    certfile, keyfile, cafile = cert_files
    with run_server(
        apps.hello,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        ssl_ca_certs=cafile,
        ssl_cert_reqs=int(ssl.CERT_REQUIRED),
    ) as server:
        url = f"https://127.0.0.1:{server.port}/"
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=_client_context(cafile), timeout=5)
        client_cert = ca.issue_cert("client@example.org")
        context = _client_context(cafile)
        client_cert.configure_cert(context)
        assert httpx.get(url, verify=context, timeout=5).text == "Hello, world!"


def test_ssl_ciphers_option(cert_files: tuple[str, str, str]) -> None:
    certfile, keyfile, cafile = cert_files
    with run_server(
        apps.hello, ssl_certfile=certfile, ssl_keyfile=keyfile, ssl_ciphers="ECDHE+AESGCM"
    ) as server:
        assert httpx.get(
            f"https://127.0.0.1:{server.port}/", verify=_client_context(cafile), timeout=5
        ).is_success


def test_ssl_context_factory_one_argument(ca: Any, cert_files: tuple[str, str, str]) -> None:
    _, _, cafile = cert_files
    calls: list[Config] = []

    def factory(config: Config) -> ssl.SSLContext:
        calls.append(config)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        return context

    with run_server(apps.hello, ssl_context_factory=factory) as server:
        assert server.config.is_ssl
        assert httpx.get(
            f"https://127.0.0.1:{server.port}/", verify=_client_context(cafile), timeout=5
        ).is_success
    assert calls == [server.config]


def test_ssl_context_factory_with_default_factory(cert_files: tuple[str, str, str]) -> None:
    certfile, keyfile, cafile = cert_files
    seen: list[str] = []

    def factory(config: Config, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        seen.append("customised")
        return context

    with run_server(
        apps.hello, ssl_certfile=certfile, ssl_keyfile=keyfile, ssl_context_factory=factory
    ) as server:
        assert httpx.get(
            f"https://127.0.0.1:{server.port}/", verify=_client_context(cafile), timeout=5
        ).is_success
    assert seen == ["customised"]


def test_ssl_context_factory_must_return_a_context() -> None:
    config = Config(apps.hello, log_config=None, ssl_context_factory=lambda config: "not a context")
    with pytest.raises(TypeError, match="SSLContext"):
        config.load()


def test_cli_https_logs_https_url(cli: Any, cert_files: tuple[str, str, str]) -> None:
    certfile, keyfile, cafile = cert_files
    port = free_port()
    process = cli(
        "tests.apps:hello", "--port", str(port), "--ssl-certfile", certfile, "--ssl-keyfile", keyfile
    )
    assert process.wait_for(f"Fulmen running on https://127.0.0.1:{port} (Press CTRL+C to quit)"), (
        process.output
    )
    response = httpx.get(f"https://127.0.0.1:{port}/x", verify=_client_context(cafile), timeout=5)
    assert response.text == "Hello, world!"
    assert process.wait_for('"GET /x HTTP/1.1" 200 OK', timeout=5)
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0


def test_cli_bad_certificate_exits_3(cli: Any, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    process = cli("tests.apps:hello", "--port", str(free_port()), "--ssl-certfile", str(bogus))
    assert process.wait(15) == 3
    assert "Error loading TLS certificate or key" in process.output
