//! Conversions between engine payloads and Python objects.

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};

/// How a route hands messages to Python (HyperExpress' `message_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// Text as `str`, binary as `bytes`.
    String,
    /// Everything as `bytes`.
    Buffer,
    /// Everything as a read-only `memoryview`.
    ArrayBuffer,
}

impl MessageType {
    pub fn parse(name: &str) -> PyResult<Self> {
        match name {
            "String" => Ok(Self::String),
            "Buffer" => Ok(Self::Buffer),
            "ArrayBuffer" => Ok(Self::ArrayBuffer),
            other => Err(PyValueError::new_err(format!(
                "message_type must be 'String', 'Buffer' or 'ArrayBuffer', not {other:?}"
            ))),
        }
    }

    /// The Python object for a received payload. `text` payloads were checked to be UTF-8 by the decoder.
    pub fn to_python<'py>(
        self,
        py: Python<'py>,
        data: &Bytes,
        text: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Self::String if text => {
                // SAFETY: the decoder validated every text payload and close reason as UTF-8.
                let text = unsafe { std::str::from_utf8_unchecked(data) };
                Ok(PyString::new(py, text).into_any())
            }
            Self::String | Self::Buffer => Ok(PyBytes::new(py, data).into_any()),
            Self::ArrayBuffer => PyMemoryView::from(&PyBytes::new(py, data)).map(Bound::into_any),
        }
    }
}

/// A message given to `send`/`ping`, as bytes, and whether it was text.
pub enum Outgoing<'a> {
    Borrowed(&'a [u8], bool),
    Owned(Vec<u8>),
}

impl Outgoing<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Borrowed(bytes, _) => bytes,
            Self::Owned(bytes) => bytes,
        }
    }

    /// Whether the object was a `str` (so it defaults to a text frame).
    pub fn is_str(&self) -> bool {
        matches!(self, Self::Borrowed(_, true))
    }
}

/// Reads a message to send or publish and decides its frame type: `is_binary` defaults to the object's
/// type (bytes-like → binary, `str` → text); text made from bytes must be UTF-8.
pub fn extract_typed_message<'a>(
    message: &'a Bound<'_, PyAny>,
    is_binary: Option<bool>,
) -> PyResult<(Outgoing<'a>, bool)> {
    let outgoing = extract_message(message)?;
    let binary = is_binary.unwrap_or(!outgoing.is_str());
    if !binary && !outgoing.is_str() && simdutf8::basic::from_utf8(outgoing.bytes()).is_err() {
        return Err(PyValueError::new_err(
            "a text message (is_binary=False) must be valid UTF-8",
        ));
    }
    Ok((outgoing, binary))
}

/// Reads a `str` or bytes-like object without copying where the type allows it.
pub fn extract_message<'a>(message: &'a Bound<'_, PyAny>) -> PyResult<Outgoing<'a>> {
    if let Ok(text) = message.cast::<PyString>() {
        return Ok(Outgoing::Borrowed(text.to_str()?.as_bytes(), true));
    }
    if let Ok(bytes) = message.cast::<PyBytes>() {
        return Ok(Outgoing::Borrowed(bytes.as_bytes(), false));
    }
    if let Ok(array) = message.cast::<PyByteArray>() {
        return Ok(Outgoing::Owned(array.to_vec()));
    }
    if message.cast::<PyMemoryView>().is_ok() {
        let copy = message.call_method0("tobytes")?;
        return Ok(Outgoing::Owned(copy.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "a message must be str or bytes-like (bytes, bytearray, memoryview), not {}",
        message.get_type().name()?
    )))
}
