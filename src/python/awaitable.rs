//! Telling an awaitable result of a handler from a plain one, on every call of a listener.

use pyo3::ffi;
use pyo3::prelude::*;

/// Whether `value`'s type implements `__await__` (coroutines, futures, tasks, classes that define it).
///
/// It reads the type's `am_await` slot instead of looking the attribute up: for the common plain results
/// (`True` from `send`, numbers, strings) a failed attribute lookup builds and discards an
/// `AttributeError`, which cost more than the rest of the message's dispatch.
pub fn is_awaitable(value: &Bound<'_, PyAny>) -> bool {
    let type_ptr = value.get_type().as_type_ptr();
    // SAFETY: a live type object; `PyType_GetSlot` accepts static types from Python 3.10, the oldest the
    // wheel supports.
    !unsafe { ffi::PyType_GetSlot(type_ptr, ffi::Py_am_await) }.is_null()
}
