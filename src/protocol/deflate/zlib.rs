//! A safe face on C zlib's streaming API (libz-sys, built from zlib's source): raw DEFLATE streams with the
//! window and memory level set per stream, which is what bounds a connection's compression memory.

use std::ffi::{c_int, c_uint, c_void};
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

/// Runs one zlib call over `input` into `output`; inputs and outputs over 4 GiB are taken in parts.
fn run(
    stream: &mut z::z_stream,
    input: &[u8],
    output: &mut [MaybeUninit<u8>],
    call: impl FnOnce(&mut z::z_stream) -> c_int,
) -> Progress {
    let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
    let avail_out = output.len().min(c_uint::MAX as usize) as c_uint;
    // zlib never writes through `next_in`.
    stream.next_in = input.as_ptr().cast_mut();
    stream.avail_in = avail_in;
    stream.next_out = output.as_mut_ptr().cast();
    stream.avail_out = avail_out;
    let code = call(stream);
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

/// A raw DEFLATE compression stream.
pub(super) struct RawDeflate {
    stream: Box<z::z_stream>,
}

// SAFETY: the stream is used only through `&mut self`, from one thread at a time, and zlib keeps no
// thread-bound state.
unsafe impl Send for RawDeflate {}

impl RawDeflate {
    /// `window_bits` 9..=15, `mem_level` 1..=9. Panics only when zlib cannot allocate its state.
    pub fn new(level: c_int, window_bits: u8, mem_level: c_int) -> Self {
        let mut stream = new_stream();
        // SAFETY: a valid, pinned stream record and the library's own version string and record size.
        let code = unsafe {
            z::deflateInit2_(
                &mut *stream,
                level,
                z::Z_DEFLATED,
                -c_int::from(window_bits),
                mem_level,
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        assert_eq!(code, Z_OK, "deflateInit2 failed ({code})");
        Self { stream }
    }

    pub fn deflate(
        &mut self,
        input: &[u8],
        output: &mut [MaybeUninit<u8>],
        flush: c_int,
    ) -> Progress {
        // SAFETY: the stream was initialised; `run` points it at live buffers for the call's duration.
        run(&mut self.stream, input, output, |s| unsafe {
            z::deflate(s, flush)
        })
    }

    pub fn reset(&mut self) {
        // SAFETY: the stream was initialised.
        unsafe { z::deflateReset(&mut *self.stream) };
    }
}

impl Drop for RawDeflate {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised and is ended once.
        unsafe { z::deflateEnd(&mut *self.stream) };
    }
}

/// A raw DEFLATE decompression stream.
pub(super) struct RawInflate {
    stream: Box<z::z_stream>,
}

// SAFETY: as for `RawDeflate`.
unsafe impl Send for RawInflate {}

impl RawInflate {
    /// `window_bits` 8..=15. Panics only when zlib cannot allocate its state.
    pub fn new(window_bits: u8) -> Self {
        let mut stream = new_stream();
        // SAFETY: as in `RawDeflate::new`.
        let code = unsafe {
            z::inflateInit2_(
                &mut *stream,
                -c_int::from(window_bits),
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        assert_eq!(code, Z_OK, "inflateInit2 failed ({code})");
        Self { stream }
    }

    pub fn inflate(
        &mut self,
        input: &[u8],
        output: &mut [MaybeUninit<u8>],
        flush: c_int,
    ) -> Progress {
        // SAFETY: as in `RawDeflate::deflate`.
        run(&mut self.stream, input, output, |s| unsafe {
            z::inflate(s, flush)
        })
    }

    pub fn reset(&mut self) {
        // SAFETY: the stream was initialised.
        unsafe { z::inflateReset(&mut *self.stream) };
    }
}

impl Drop for RawInflate {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised and is ended once.
        unsafe { z::inflateEnd(&mut *self.stream) };
    }
}
