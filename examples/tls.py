"""TLS echo server: wss://127.0.0.1:9443/ with a throwaway certificate made at start.

Run: python examples/tls.py [port]   (needs trustme: pip install trustme)

trustme makes a CA that exists only for this run and a certificate from it for 127.0.0.1; a client
that trusts that CA (the file printed at start) can connect. A real server gives the files of its
real certificate: hyperws.Server(cert_file="fullchain.pem", key_file="privkey.pem").
"""

import sys
import tempfile
from pathlib import Path

import hyperws

try:
    import trustme
except ImportError:
    sys.exit("This example makes its certificate with trustme: pip install trustme")


def write_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """Writes a throwaway CA and a certificate it issued for 127.0.0.1: (CA, certificate, key)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(ca_file)
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    return ca_file, cert_file, key_file


def echo(ws: hyperws.Websocket) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary))


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9443
    with tempfile.TemporaryDirectory() as folder:
        ca_file, cert_file, key_file = write_certificate(Path(folder))
        server = hyperws.Server(cert_file=cert_file, key_file=key_file)
        server.ws("/", echo)
        print(f"hyperws TLS echo server on wss://127.0.0.1:{port}/ (Ctrl-C to stop)")
        print(f"Its CA, for clients to trust while it runs: {ca_file}")
        # Python's ssl module reads SSL_CERT_FILE for the CAs it trusts by default.
        print(
            f"Try it: SSL_CERT_FILE={ca_file} python -m websockets wss://127.0.0.1:{port}/",
            flush=True,
        )
        server.run(port, host="127.0.0.1")
