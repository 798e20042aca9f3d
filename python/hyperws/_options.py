"""Route options: names and defaults follow HyperExpress; anything unknown or out of range is an error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MESSAGE_TYPES = ("String", "Buffer", "ArrayBuffer")


@dataclass(frozen=True)
class WsOptions:
    """Validated options of a WebSocket route."""

    idle_timeout: float = 32
    max_lifetime: float = 0
    max_payload_length: int = 32 * 1024
    message_type: str = "String"
    send_pings_automatically: bool = True
    max_backpressure: int = 1024 * 1024
    close_on_backpressure_limit: bool = False


_WS_OPTION_NAMES = frozenset(WsOptions.__dataclass_fields__)


def ws_options(options: Mapping[str, Any] | None, keywords: Mapping[str, Any]) -> WsOptions:
    """Merges an options mapping and keyword options, and checks every name and value."""
    merged: dict[str, Any] = {}
    if options is not None:
        if not isinstance(options, Mapping):
            raise TypeError(f"route options must be a dict, got {type(options).__name__}")
        merged.update(options)
    merged.update(keywords)
    unknown = sorted(set(merged) - _WS_OPTION_NAMES)
    if unknown:
        known = ", ".join(sorted(_WS_OPTION_NAMES))
        raise ValueError(f"unknown ws route option(s): {', '.join(unknown)} (known: {known})")

    idle_timeout = merged.get("idle_timeout", WsOptions.idle_timeout)
    if (
        isinstance(idle_timeout, bool)
        or not isinstance(idle_timeout, (int, float))
        or idle_timeout < 0
    ):
        raise ValueError(
            f"idle_timeout must be a number of seconds >= 0 (0 = never), got {idle_timeout!r}"
        )

    max_lifetime = merged.get("max_lifetime", WsOptions.max_lifetime)
    if (
        isinstance(max_lifetime, bool)
        or not isinstance(max_lifetime, (int, float))
        or max_lifetime < 0
    ):
        raise ValueError(
            f"max_lifetime must be a number of minutes >= 0 (0 = never), got {max_lifetime!r}"
        )

    max_payload_length = merged.get("max_payload_length", WsOptions.max_payload_length)
    if (
        isinstance(max_payload_length, bool)
        or not isinstance(max_payload_length, int)
        or max_payload_length <= 0
    ):
        raise ValueError(
            f"max_payload_length must be a positive int (bytes), got {max_payload_length!r}"
        )

    message_type = merged.get("message_type", WsOptions.message_type)
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"message_type must be one of {MESSAGE_TYPES}, got {message_type!r}")

    send_pings = merged.get("send_pings_automatically", WsOptions.send_pings_automatically)
    if not isinstance(send_pings, bool):
        raise ValueError(f"send_pings_automatically must be True or False, got {send_pings!r}")

    max_backpressure = merged.get("max_backpressure", WsOptions.max_backpressure)
    if (
        isinstance(max_backpressure, bool)
        or not isinstance(max_backpressure, int)
        or max_backpressure < 0
    ):
        raise ValueError(f"max_backpressure must be an int >= 0 (bytes), got {max_backpressure!r}")

    close_on_limit = merged.get(
        "close_on_backpressure_limit", WsOptions.close_on_backpressure_limit
    )
    if not isinstance(close_on_limit, bool):
        raise ValueError(
            f"close_on_backpressure_limit must be True or False, got {close_on_limit!r}"
        )

    return WsOptions(
        idle_timeout=float(idle_timeout),
        max_lifetime=float(max_lifetime),
        max_payload_length=max_payload_length,
        message_type=message_type,
        send_pings_automatically=send_pings,
        max_backpressure=max_backpressure,
        close_on_backpressure_limit=close_on_limit,
    )
