"""TLS: wss:// and https:// served by the engine (rustls), certificates and keys in every PEM form,
errors that name the file, SNI, client certificates, reload, failed handshakes counted, and the
engine's features over TLS. Certificates come from trustme (a throwaway CA)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.client
import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

import hyperws

import rawws
from conftest import echo
from helpers import TIMEOUT, until
from tls_records import RecordClient

MIB = 1024 * 1024


class Certs:
    """A CA, and PEM files it issued, written under a temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA()
        self.ca_file = self.write("ca.pem", self.ca.cert_pem.bytes())

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def issue(self, stem: str, *names: str) -> tuple[Path, Path]:
        """A certificate for `names` (chain in the cert file) and its PKCS#8 key."""
        cert = self.ca.issue_cert(*names)
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return self.write(f"{stem}.pem", chain), self.write(
            f"{stem}.key", cert.private_key_pem.bytes()
        )

    def client_context(self, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        if client_cert is not None:
            client_cert.configure_cert(context)
        return context


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


def tls_server(certs: Certs, **options: object) -> hyperws.Server:
    cert_file, key_file = certs.issue("server", "localhost", "127.0.0.1")
    server = hyperws.Server(cert_file=cert_file, key_file=key_file, **options)  # type: ignore[arg-type]
    server.ws("/echo", echo, max_payload_length=4 * MIB)
    return server


def wss(server: hyperws.Server, path: str = "/echo", **kwargs: object):
    return connect(
        f"wss://127.0.0.1:{server.port}{path}",
        server_hostname=kwargs.pop("server_hostname", "localhost"),
        open_timeout=TIMEOUT,
        **kwargs,
    )


async def served_certificate(
    server: hyperws.Server, context: ssl.SSLContext, name: str
) -> dict[str, object]:
    """The certificate the server presents to a client asking for `name` (SNI)."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", server.port, ssl=context, server_hostname=name),
        TIMEOUT,
    )
    try:
        return writer.get_extra_info("peercert")
    finally:
        writer.close()


def names_of(certificate: dict[str, object]) -> list[str]:
    return [value for kind, value in certificate["subjectAltName"] if kind == "DNS"]  # type: ignore[union-attr]


async def test_wss_echoes_text_binary_and_large_messages(serve, certs):
    server = await serve(tls_server(certs))
    async with wss(server, ssl=certs.client_context(), max_size=4 * MIB) as client:
        await client.send("hello over TLS")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hello over TLS"
        big = os.urandom(3 * MIB)
        await client.send(big)
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == big
        for n in range(200):
            await client.send(f"m{n}")
        assert [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(200)] == [
            f"m{n}" for n in range(200)
        ]


async def test_https_routes_are_served_over_tls(serve, certs):
    server = tls_server(certs)

    @server.get("/health")
    def health(request: hyperws.Request, response: hyperws.Response) -> None:
        assert request.peer_certificate is None  # no client_auth: none asked for
        response.json({"status": "ok"})

    await serve(server)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", server.port, ssl=certs.client_context(), server_hostname="localhost"
        ),
        TIMEOUT,
    )
    writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b'{"status":"ok"}') or response.endswith(b'{"status": "ok"}')


async def test_plain_http_to_the_tls_port_is_cut_and_counted(serve, certs):
    server = await serve(tls_server(certs))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), TIMEOUT) in (b"", b"\x15\x03\x03\x00\x02\x02\x32")
    writer.close()
    await until(lambda: server.stats()["tls_handshake_failures"] == 1)
    async with wss(server, ssl=certs.client_context()) as client:  # others are served as before
        await client.send("still here")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "still here"


async def test_a_client_stalled_mid_handshake_is_cut_at_request_timeout(serve, certs):
    server = await serve(tls_server(certs, request_timeout=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()
    assert server.stats()["tls_handshake_failures"] == 1


def test_a_missing_file_is_an_os_error_naming_it(certs):
    cert_file, _ = certs.issue("server", "localhost")
    missing = certs.folder / "missing.key"
    with pytest.raises(FileNotFoundError) as raised:
        hyperws.Server(cert_file=cert_file, key_file=missing)
    assert raised.value.filename == str(missing)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not a certificate", "no certificate in it"),
        (b"-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n", "cert.pem"),
    ],
)
def test_a_file_without_a_certificate_is_a_value_error_naming_it(certs, content, problem):
    _, key_file = certs.issue("server", "localhost")
    bad = certs.write("cert.pem", content)
    with pytest.raises(ValueError, match=problem) as raised:
        hyperws.Server(cert_file=bad, key_file=key_file)
    assert str(bad) in str(raised.value)


def test_a_key_that_is_not_the_certificates_is_a_value_error_naming_both(certs):
    cert_file, _ = certs.issue("one", "localhost")
    _, other_key = certs.issue("two", "localhost")
    with pytest.raises(ValueError, match="does not belong to the certificate") as raised:
        hyperws.Server(cert_file=cert_file, key_file=other_key)
    assert str(other_key) in str(raised.value) and str(cert_file) in str(raised.value)


def test_a_file_without_a_key_is_a_value_error(certs):
    cert_file, _ = certs.issue("server", "localhost")
    with pytest.raises(ValueError, match="no private key"):
        hyperws.Server(cert_file=cert_file, key_file=cert_file)


def rsa_certificate(certs: Certs) -> tuple[Path, rsa.RSAPrivateKey]:
    """A certificate for localhost with an RSA key (trustme's are EC), and that key."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    certs.ca = ca
    leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    cert_file = certs.write("rsa.pem", b"".join(b.bytes() for b in leaf.cert_chain_pems))
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return cert_file, key


@pytest.mark.parametrize("form", ["pkcs1", "pkcs8", "encrypted-pkcs8", "sec1"])
async def test_keys_in_every_pem_form_serve(serve, certs, form):
    password = None
    if form in ("pkcs1", "pkcs8"):
        cert_file, key = rsa_certificate(certs)
        encoding = serialization.PrivateFormat.TraditionalOpenSSL
        if form == "pkcs8":
            encoding = serialization.PrivateFormat.PKCS8
        pem = key.private_bytes(serialization.Encoding.PEM, encoding, serialization.NoEncryption())
    else:
        cert_file, key_file = certs.issue("ec", "localhost")
        ec_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if form == "sec1":
            pem = ec_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            assert b"BEGIN EC PRIVATE KEY" in pem
        else:
            password = "s3cret"
            pem = ec_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password.encode()),
            )
            assert b"BEGIN ENCRYPTED PRIVATE KEY" in pem
    key_path = certs.write(f"{form}.key", pem)
    server = hyperws.Server(cert_file=cert_file, key_file=key_path, key_password=password)
    server.ws("/echo", echo)
    await serve(server)
    async with wss(server, ssl=certs.client_context()) as client:
        await client.send(form)
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == form


def test_an_encrypted_key_needs_its_password(certs):
    cert_file, key_file = certs.issue("ec", "localhost")
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    encrypted = certs.write(
        "encrypted.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right"),
        ),
    )
    with pytest.raises(ValueError, match="give its password as key_password"):
        hyperws.Server(cert_file=cert_file, key_file=encrypted)
    with pytest.raises(ValueError, match="wrong key_password"):
        hyperws.Server(cert_file=cert_file, key_file=encrypted, key_password="wrong")
    hyperws.Server(cert_file_name=cert_file, key_file_name=encrypted, passphrase="right")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key_file": "k.pem"}, "cert_file is missing"),
        ({"cert_file": "c.pem"}, "key_file is missing"),
        ({"ca_file": "ca.pem"}, "give cert_file and key_file"),
        ({"cert_file": "c.pem", "cert_file_name": "c.pem", "key_file": "k"}, "not both"),
    ],
)
def test_incomplete_tls_options_are_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        hyperws.Server(**options)


async def test_server_names_choose_the_certificate(serve, certs):
    server = tls_server(certs)
    exact = certs.issue("exact", "example.com")
    wildcard = certs.issue("wildcard", "*.example.org")
    server.add_server_name("example.com", cert_file=exact[0], key_file=exact[1])
    server.add_server_name("*.example.org", cert_file=wildcard[0], key_file=wildcard[1])
    await serve(server)
    context = certs.client_context()
    assert names_of(await served_certificate(server, context, "example.com")) == ["example.com"]
    assert names_of(await served_certificate(server, context, "a.example.org")) == ["*.example.org"]
    context.check_hostname = False
    assert names_of(await served_certificate(server, context, "other.net")) == ["localhost"]
    assert server.remove_server_name("example.com")
    assert names_of(await served_certificate(server, context, "example.com")) == ["localhost"]
    assert not server.remove_server_name("example.com")
    with pytest.raises(ValueError, match="server name"):
        server.add_server_name("bad name", cert_file=exact[0], key_file=exact[1])


async def test_reload_serves_new_certificates_and_keeps_open_connections(serve, certs):
    server = await serve(tls_server(certs))
    context = certs.client_context()
    first = await served_certificate(server, context, "localhost")
    async with wss(server, ssl=context) as before:
        certs.issue("server", "localhost", "127.0.0.1")  # the files are replaced (renewed)
        server.reload_tls()
        renewed = await served_certificate(server, context, "localhost")
        assert renewed["serialNumber"] != first["serialNumber"]
        await before.send("opened before the reload")
        assert await asyncio.wait_for(before.recv(), TIMEOUT) == "opened before the reload"
        (certs.folder / "server.key").write_bytes(b"garbage")
        with pytest.raises(ValueError, match=r"server\.key"):
            server.reload_tls()
        kept = await served_certificate(server, context, "localhost")
        assert kept["serialNumber"] == renewed["serialNumber"]


async def test_tls_methods_need_a_tls_server():
    with pytest.raises(RuntimeError, match="needs TLS"):
        hyperws.Server().reload_tls()


@pytest.mark.parametrize("client_auth", ["required", "optional"])
async def test_client_certificates(serve, certs, client_auth):
    """The certificate a client presented is on the upgrade request and on the socket, so an app
    can authorize by it."""
    seen: list[tuple[str, object, object]] = []
    server = tls_server(certs, ca_file=certs.ca_file, client_auth=client_auth)

    @server.upgrade("/who")
    def decide(request: hyperws.Request, response: hyperws.Response) -> None:
        seen.append(("request", request.peer_certificate, None))
        response.upgrade()

    @server.ws("/who")
    def who(ws: hyperws.Websocket) -> None:
        certificate = ws.peer_certificate
        ws.send(certificate.common_name if certificate is not None else "anonymous")

    await serve(server)
    client_cert = certs.ca.issue_cert(
        "client@example.com", "alice.example.com", common_name="alice"
    )
    async with wss(server, "/who", ssl=certs.client_context(client_cert)) as client:
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "alice"
    certificate = seen[0][1]
    assert isinstance(certificate, hyperws.PeerCertificate)
    assert certificate.common_name == "alice"
    assert "CN=alice" in certificate.subject
    assert certificate.alt_names == ["email:client@example.com", "DNS:alice.example.com"]
    issued = x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
    assert certificate.der == issued.public_bytes(serialization.Encoding.DER)
    if client_auth == "optional":
        async with wss(server, "/who", ssl=certs.client_context()) as client:
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "anonymous"
        assert seen[1][1] is None
        return
    # TLS 1.3: the client finishes its side first, then the server refuses it and closes.
    with pytest.raises((InvalidMessage, ssl.SSLError, ConnectionError)):
        async with wss(server, ssl=certs.client_context()) as client:
            await client.send("without")
            await asyncio.wait_for(client.recv(), TIMEOUT)
    await until(lambda: server.stats()["tls_handshake_failures"] >= 1)


async def test_pubsub_compression_and_backpressure_work_over_tls(serve, certs):
    opened: list[hyperws.Websocket] = []

    def on_open(ws: hyperws.Websocket) -> None:
        ws.subscribe("news")
        opened.append(ws)

    server = tls_server(certs)
    server.ws("/news", on_open, compression="shared", max_backpressure=64 * 1024)
    await serve(server)
    context = certs.client_context()
    async with (
        wss(server, "/news", ssl=context, max_size=16 * MIB) as a,
        wss(server, "/news", ssl=context, max_size=16 * MIB) as b,
    ):
        await until(lambda: len(opened) == 2)
        assert server.publish("news", "x" * 10_000, compress=True)
        assert await asyncio.wait_for(a.recv(), TIMEOUT) == "x" * 10_000
        assert await asyncio.wait_for(b.recv(), TIMEOUT) == "x" * 10_000
        chunks = [os.urandom(MIB) for _ in range(8)]
        streamed = asyncio.ensure_future(opened[0].stream(iter(chunks)))
        assert await asyncio.wait_for(a.recv(), TIMEOUT * 4) == b"".join(chunks)
        await asyncio.wait_for(streamed, TIMEOUT)
        assert opened[0].buffered == 0


def tls_exchange_after_proxy_header(
    port: int, context: ssl.SSLContext, proxy_header: bytes, request: bytes
) -> bytes:
    """A blocking client that sends a PROXY header and its TLS ClientHello in one write (so the
    server reads part of the handshake with the header), then `request`; returns the answer."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        pending = proxy_header
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(pending + outgoing.read())
                pending = b""
                incoming.write(sock.recv(65536))
        tls.write(request)
        sock.sendall(outgoing.read())
        answer = b""
        while chunk := sock.recv(65536):
            incoming.write(chunk)
            with contextlib.suppress(ssl.SSLWantReadError):
                while data := tls.read(65536):
                    answer += data
        return answer


async def test_tls_after_a_proxy_protocol_header(serve, certs):
    server = tls_server(certs, proxy_protocol=True)

    @server.get("/ip")
    def ip(request: hyperws.Request, response: hyperws.Response) -> None:
        response.header("Connection", "close").send(request.ip)

    await serve(server)
    answer = await asyncio.to_thread(
        tls_exchange_after_proxy_header,
        server.port,
        certs.client_context(),
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n",
        b"GET /ip HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"203.0.113.7")


async def test_a_client_that_does_not_trust_the_certificate_fails_and_is_counted(serve, certs):
    server = await serve(tls_server(certs))
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)  # another CA
    with pytest.raises(ssl.SSLCertVerificationError):
        async with wss(server, ssl=stranger):
            pass
    await until(lambda: server.stats()["tls_handshake_failures"] == 1)


async def test_an_expired_certificate_is_served_as_is_and_refused_by_clients(serve, certs):
    expired = certs.ca.issue_cert(
        "localhost",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc),
    )
    cert_file = certs.write("expired.pem", b"".join(b.bytes() for b in expired.cert_chain_pems))
    key_file = certs.write("expired.key", expired.private_key_pem.bytes())
    server = hyperws.Server(cert_file=cert_file, key_file=key_file)
    server.ws("/echo", echo)
    await serve(server)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        async with wss(server, ssl=certs.client_context()):
            pass


async def test_an_expired_client_certificate_is_refused(serve, certs):
    server = await serve(tls_server(certs, ca_file=certs.ca_file, client_auth="required"))
    expired = certs.ca.issue_cert(
        "client@example.com",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc),
    )
    with pytest.raises((InvalidMessage, ssl.SSLError, ConnectionError)):
        async with wss(server, ssl=certs.client_context(expired)) as client:
            await client.send("expired")
            await asyncio.wait_for(client.recv(), TIMEOUT)
    await until(lambda: server.stats()["tls_handshake_failures"] == 1)


async def test_a_reload_while_100_clients_echo(serve, certs):
    server = await serve(tls_server(certs))
    context = certs.client_context()
    first = await served_certificate(server, context, "localhost")
    clients = [await wss(server, ssl=context) for _ in range(100)]
    try:

        async def echo_rounds(client, rounds: int) -> None:
            for n in range(rounds):
                await client.send(f"{n}")
                assert await asyncio.wait_for(client.recv(), TIMEOUT) == f"{n}"

        echoing = asyncio.gather(*(echo_rounds(client, 20) for client in clients))
        certs.issue("server", "localhost", "127.0.0.1")
        server.reload_tls()
        await asyncio.wait_for(echoing, TIMEOUT * 4)
        renewed = await served_certificate(server, context, "localhost")
        assert renewed["serialNumber"] != first["serialNumber"]
        assert server.connections == 100
    finally:
        await asyncio.gather(*(client.close() for client in clients))


def test_https_with_http_client(certs):
    """The standard library's blocking http.client over TLS, from a thread of its own."""

    async def main() -> tuple[int, bytes]:
        server = tls_server(certs)

        @server.post("/items")
        async def add(request: hyperws.Request, response: hyperws.Response) -> None:
            response.status(201).send(await request.bytes())

        await server.listen(0, "127.0.0.1")
        try:

            def post() -> tuple[int, bytes]:
                connection = http.client.HTTPSConnection(
                    "localhost", server.port, context=certs.client_context(), timeout=TIMEOUT
                )
                connection.request("POST", "/items", body=b"item")
                answer = connection.getresponse()
                result = answer.status, answer.read()
                connection.close()
                return result

            return await asyncio.to_thread(post)
        finally:
            await server.close()

    assert asyncio.run(main()) == (201, b"item")


def echo_record_by_record(port: int, context: ssl.SSLContext) -> None:
    """Upgrades, then sends 50 small messages as 50 records in one write, a 100 KiB message as full
    16 KiB records cut into 1000-byte writes (records split across the server's reads), and a record
    cut inside its header; checks every echo."""
    client = RecordClient(port, context)
    try:
        key = rawws.new_key()
        client.sock.sendall(client.records(rawws.upgrade_request("/echo", key=key)))
        assert client.read_head().startswith(b"HTTP/1.1 101 ")

        small = [f"message {i}".encode() for i in range(50)]
        frames = [rawws.build_frame(rawws.TEXT, message) for message in small]
        client.sock.sendall(client.records(*frames))
        for message in small:
            assert client.read_frame() == (rawws.TEXT, message)

        large = os.urandom(100 * 1024)
        records = client.records(rawws.build_frame(rawws.BINARY, large))
        for start in range(0, len(records), 1000):
            client.sock.sendall(records[start : start + 1000])
            time.sleep(0.001)
        assert client.read_frame() == (rawws.BINARY, large)

        records = client.records(rawws.build_frame(rawws.TEXT, b"after a cut header"))
        client.sock.sendall(records[:3])
        time.sleep(0.05)
        client.sock.sendall(records[3:])
        assert client.read_frame() == (rawws.TEXT, b"after a cut header")
    finally:
        client.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_records_in_one_segment_split_across_reads_and_full_size(serve, certs, version):
    server = await serve(tls_server(certs))
    context = certs.client_context()
    context.minimum_version = context.maximum_version = version
    await asyncio.to_thread(echo_record_by_record, server.port, context)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_tls_versions_echo_and_close_cleanly(serve, certs, version):
    server = await serve(tls_server(certs))
    context = certs.client_context()
    context.minimum_version = context.maximum_version = version
    async with wss(server, ssl=context) as ws:
        tls = ws.transport.get_extra_info("ssl_object")
        assert tls.version() == version.name.replace("_", ".")
        for message in ["small", "x" * 70_000, os.urandom(300_000)]:
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
        await ws.close()
        assert ws.close_code == 1000
