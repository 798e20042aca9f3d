//! permessage-deflate (RFC 7692): negotiation, and the compressor and decompressor of message payloads.
//!
//! A compressed message is a raw DEFLATE stream flushed with a sync flush, without its final
//! `00 00 ff ff`; the receiver appends those four bytes before inflating. C zlib does the DEFLATE work.

mod compress;
mod decompress;
mod negotiate;
mod zlib;

pub use compress::{compress_shared, Compressor};
pub use decompress::Decompressor;
pub use negotiate::{negotiate, Compression, DeflateParams};

/// The smallest LZ77 window RFC 7692 allows (256 bytes).
pub const MIN_WINDOW_BITS: u8 = 8;
/// The largest, and the default (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;

/// Messages shorter than this are sent plain when they would be compressed on their own (`shared`, a
/// publish, `server_no_context_takeover`): alone, they shrink by a few bytes at most, and each costs a
/// reset of the compressor's 128 KiB hash table (`cargo bench --bench deflate`: about 3 µs).
pub const MIN_ALONE: usize = 128;

/// What a sync flush ends with, and what a compressed message leaves out.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
