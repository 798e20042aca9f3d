//! hyperws: the Rust engine of a WebSocket server for Python asyncio apps.
//!
//! Layers (see docs/architecture.md): `protocol` (sans-I/O frames and messages), `routing` (URL patterns),
//! `pubsub` (topic registry), `net` (tokio sockets), `bridge` (tokio ↔ asyncio hand-over), `python` (PyO3 face).

pub mod bridge;
pub mod net;
pub mod protocol;
pub mod pubsub;
pub mod python;
pub mod routing;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
