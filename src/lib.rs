//! hyperws: the Rust engine of a WebSocket server for Python asyncio apps.
//!
//! Layers (see docs/architecture.md): `protocol` (sans-I/O frames and messages), `routing` (URL patterns),
//! `pubsub` (topic registry), `backplane` (pub/sub across nodes through a broker), `net` (tokio sockets), `bridge` (tokio ↔ asyncio hand-over), `python` (PyO3 face).

pub mod backplane;
pub mod bridge;
pub mod net;
pub mod protocol;
pub mod pubsub;
pub mod python;
pub mod routing;

// Fuzzing uses the system allocator, whose allocations AddressSanitizer and libFuzzer's malloc limit see;
// so does Miri (scripts/miri.sh), which interprets Rust and cannot call mimalloc's C.
#[cfg(not(any(fuzzing, miri)))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
