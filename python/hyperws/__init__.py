"""hyperws: a WebSocket server for asyncio apps, with a Rust engine and the HyperExpress Websocket API."""

from ._core import PeerCertificate, Websocket
from ._http import Request, Response
from ._router import Router
from ._server import Server

__all__ = ["PeerCertificate", "Request", "Response", "Router", "Server", "Websocket", "__version__"]
__version__ = "0.1.0"
