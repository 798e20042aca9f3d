"""Route options: names and defaults follow HyperExpress; anything unknown or out of range is an error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

MESSAGE_TYPES = ("String", "Buffer", "ArrayBuffer")
COMPRESSIONS = ("disabled", "shared", "dedicated")


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
    origins: tuple[str, ...] | None = None
    compression: str = "disabled"
    compression_window_bits: int = 15


def _merge(
    options: Mapping[str, Any] | None, keywords: Mapping[str, Any], kind: str, known: Any
) -> dict[str, Any]:
    """An options mapping and keyword options together; unknown names are an error."""
    merged: dict[str, Any] = {}
    if options is not None:
        if not isinstance(options, Mapping):
            raise TypeError(f"route options must be a dict, got {type(options).__name__}")
        merged.update(options)
    merged.update(keywords)
    unknown = sorted(set(merged) - set(known))
    if unknown:
        names = ", ".join(sorted(known))
        raise ValueError(f"unknown {kind} route option(s): {', '.join(unknown)} (known: {names})")
    return merged


def ws_options(options: Mapping[str, Any] | None, keywords: Mapping[str, Any]) -> WsOptions:
    """Merges an options mapping and keyword options, and checks every name and value."""
    merged = _merge(options, keywords, "ws", WsOptions.__dataclass_fields__)

    idle_timeout = _number(merged, "idle_timeout", "a number of seconds >= 0 (0 = never)", 0)
    max_lifetime = _number(merged, "max_lifetime", "a number of minutes >= 0 (0 = never)", 0)
    max_payload_length = _number(
        merged, "max_payload_length", "a positive int (bytes)", 1, integer=True
    )

    message_type = merged.get("message_type", WsOptions.message_type)
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"message_type must be one of {MESSAGE_TYPES}, got {message_type!r}")

    send_pings = _flag(merged, "send_pings_automatically")

    max_backpressure = _number(merged, "max_backpressure", "an int >= 0 (bytes)", 0, integer=True)

    close_on_limit = _flag(merged, "close_on_backpressure_limit")
    origins = _origins(merged.get("origins"))
    compression, window_bits = _compression(merged)

    return WsOptions(
        idle_timeout=float(idle_timeout),
        max_lifetime=float(max_lifetime),
        max_payload_length=max_payload_length,
        message_type=message_type,
        send_pings_automatically=send_pings,
        max_backpressure=max_backpressure,
        close_on_backpressure_limit=close_on_limit,
        origins=origins,
        compression=compression,
        compression_window_bits=window_bits,
    )


def _number(
    options: Mapping[str, Any], name: str, expected: str, minimum: int, *, integer: bool = False
) -> Any:
    """The option ``name`` (or its default), checked to be a number (an int with ``integer``) of at
    least ``minimum``."""
    value = options.get(name, getattr(WsOptions, name))
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or cast(float, value) < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def _flag(options: Mapping[str, Any], name: str) -> bool:
    """The option ``name`` (or its default), checked to be True or False."""
    value = options.get(name, getattr(WsOptions, name))
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class UpgradeOptions:
    """Validated options of an upgrade route."""

    middlewares: tuple[Any, ...] = ()
    upgrade_timeout: float = 10


def upgrade_options(
    options: Mapping[str, Any] | None, keywords: Mapping[str, Any]
) -> UpgradeOptions:
    """Merges and checks the options of an upgrade route."""
    merged = _merge(options, keywords, "upgrade", UpgradeOptions.__dataclass_fields__)
    middlewares = merged.get("middlewares", ())
    if not isinstance(middlewares, (list, tuple)) or not all(callable(m) for m in middlewares):
        raise ValueError(f"middlewares must be a list of callables, got {middlewares!r}")
    timeout = merged.get("upgrade_timeout", UpgradeOptions.upgrade_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"upgrade_timeout must be a number of seconds > 0, got {timeout!r}")
    return UpgradeOptions(middlewares=tuple(middlewares), upgrade_timeout=float(timeout))


def _origins(value: Any) -> tuple[str, ...] | None:
    """The ``origins`` option: exact origins (``scheme://host[:port]``) or ``"*"``."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(
            f"origins must be a list of origins such as 'https://example.com', got {value!r}"
        )
    origins = []
    for origin in value:
        if not isinstance(origin, str) or (origin != "*" and "://" not in origin):
            raise ValueError(
                f"origins must be exact origins such as 'https://example.com' or '*', got {origin!r}"
            )
        origins.append(origin.rstrip("/"))
    return tuple(origins)


def _compression(options: Mapping[str, Any]) -> tuple[str, int]:
    """The ``compression`` option and the window of ``"dedicated"`` (``compression_window_bits``)."""
    compression = options.get("compression", WsOptions.compression)
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    bits = options.get("compression_window_bits", WsOptions.compression_window_bits)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 8 <= bits <= 15:
        raise ValueError(
            f"compression_window_bits must be an int from 8 to 15 (a window of 2**bits bytes), got {bits!r}"
        )
    if "compression_window_bits" in options and compression != "dedicated":
        raise ValueError(
            f"compression_window_bits applies to compression='dedicated' only (compression is {compression!r})"
        )
    return compression, bits
