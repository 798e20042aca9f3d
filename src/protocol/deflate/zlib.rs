//! A safe face on C zlib's streaming API (libz-sys, built from zlib's source): raw DEFLATE streams with the
//! window and memory level set per stream, which is what bounds a connection's compression memory.

use std::ffi::{c_int, c_uint, c_void};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;

use libz_sys as z;

/// What one call did: bytes taken from the input, bytes written to the output, and zlib's return code.
#[derive(Debug, Clone, Copy)]
pub(super) struct Progress {
    pub read: usize,
    pub written: usize,
    pub code: c_int,
}

pub(super) use z::{Z_BUF_ERROR, Z_OK, Z_STREAM_END, Z_SYNC_FLUSH};

unsafe extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    // SAFETY: plain malloc; zlib frees it with `zfree`.
    unsafe { libc::malloc(items as usize * size as usize) }
}

unsafe extern "C" fn zfree(_opaque: *mut c_void, address: *mut c_void) {
    // SAFETY: `address` came from `zalloc`.
    unsafe { libc::free(address) }
}

/// A fresh stream record. It is boxed because zlib's state points back at it: it must not move.
fn new_stream() -> Box<z::z_stream> {
    Box::new(z::z_stream {
        next_in: ptr::null_mut(),
        avail_in: 0,
        total_in: 0,
        next_out: ptr::null_mut(),
        avail_out: 0,
        total_out: 0,
        msg: ptr::null_mut(),
        state: ptr::null_mut(),
        zalloc,
        zfree,
        opaque: ptr::null_mut(),
        data_type: 0,
        adler: 0,
        reserved: 0,
    })
}

/// Compression or decompression: the zlib calls that step, reset and end a stream of that kind.
pub(super) trait Direction {
    const STEP: unsafe extern "C" fn(z::z_streamp, c_int) -> c_int;
    const RESET: unsafe extern "C" fn(z::z_streamp) -> c_int;
    const END: unsafe extern "C" fn(z::z_streamp) -> c_int;
}

pub(super) struct Deflating;
pub(super) struct Inflating;

impl Direction for Deflating {
    const STEP: unsafe extern "C" fn(z::z_streamp, c_int) -> c_int = z::deflate;
    const RESET: unsafe extern "C" fn(z::z_streamp) -> c_int = z::deflateReset;
    const END: unsafe extern "C" fn(z::z_streamp) -> c_int = z::deflateEnd;
}

impl Direction for Inflating {
    const STEP: unsafe extern "C" fn(z::z_streamp, c_int) -> c_int = z::inflate;
    const RESET: unsafe extern "C" fn(z::z_streamp) -> c_int = z::inflateReset;
    const END: unsafe extern "C" fn(z::z_streamp) -> c_int = z::inflateEnd;
}

/// An initialised raw DEFLATE stream of one direction.
pub(super) struct RawStream<D: Direction> {
    stream: Box<z::z_stream>,
    direction: PhantomData<D>,
}

pub(super) type RawDeflate = RawStream<Deflating>;
pub(super) type RawInflate = RawStream<Inflating>;

// SAFETY: the stream is used only through `&mut self`, from one thread at a time, and zlib keeps no
// thread-bound state.
unsafe impl<D: Direction> Send for RawStream<D> {}

impl<D: Direction> RawStream<D> {
    /// Takes what it can of `input` into `output` with zlib's `flush` mode; inputs and outputs over 4 GiB
    /// are taken in parts.
    pub fn run(&mut self, input: &[u8], output: &mut [MaybeUninit<u8>], flush: c_int) -> Progress {
        let stream = &mut *self.stream;
        let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
        let avail_out = output.len().min(c_uint::MAX as usize) as c_uint;
        // zlib never writes through `next_in`.
        stream.next_in = input.as_ptr().cast_mut();
        stream.avail_in = avail_in;
        stream.next_out = output.as_mut_ptr().cast();
        stream.avail_out = avail_out;
        // SAFETY: the stream was initialised, and points at live buffers for the call's duration.
        let code = unsafe { D::STEP(stream, flush) };
        let progress = Progress {
            read: (avail_in - stream.avail_in) as usize,
            written: (avail_out - stream.avail_out) as usize,
            code,
        };
        stream.next_in = ptr::null_mut();
        stream.avail_in = 0;
        stream.next_out = ptr::null_mut();
        stream.avail_out = 0;
        progress
    }

    pub fn reset(&mut self) {
        // SAFETY: the stream was initialised.
        unsafe { D::RESET(&mut *self.stream) };
    }

    /// Takes a stream record that `init` (a zlib `*Init2_` call) initialised. Panics when it failed, which
    /// it does only when zlib cannot allocate its state.
    fn init(what: &str, init: impl FnOnce(z::z_streamp) -> c_int) -> Self {
        let mut stream = new_stream();
        let code = init(&mut *stream);
        assert_eq!(code, Z_OK, "{what} failed ({code})");
        Self {
            stream,
            direction: PhantomData,
        }
    }
}

impl<D: Direction> Drop for RawStream<D> {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised and is ended once.
        unsafe { D::END(&mut *self.stream) };
    }
}

impl RawDeflate {
    /// `window_bits` 9..=15, `mem_level` 1..=9.
    pub fn new(level: c_int, window_bits: u8, mem_level: c_int) -> Self {
        Self::init("deflateInit2", |stream| {
            // SAFETY: a valid, pinned stream record and the library's own version string and record size.
            unsafe {
                z::deflateInit2_(
                    stream,
                    level,
                    z::Z_DEFLATED,
                    -c_int::from(window_bits),
                    mem_level,
                    z::Z_DEFAULT_STRATEGY,
                    z::zlibVersion(),
                    std::mem::size_of::<z::z_stream>() as c_int,
                )
            }
        })
    }
}

impl RawInflate {
    /// `window_bits` 8..=15.
    pub fn new(window_bits: u8) -> Self {
        Self::init("inflateInit2", |stream| {
            // SAFETY: as in `RawDeflate::new`.
            unsafe {
                z::inflateInit2_(
                    stream,
                    -c_int::from(window_bits),
                    z::zlibVersion(),
                    std::mem::size_of::<z::z_stream>() as c_int,
                )
            }
        })
    }
}
