//! `GilCell`: the changing state of a `frozen` pyclass, borrowed only while the GIL is held.
//!
//! A mutable pyclass pays an atomic compare-and-swap and an atomic decrement for each borrow (PyO3 keeps
//! its borrow flags atomic for free-threaded Python); the message path borrows a connection several
//! times per message, and those locked instructions were 6 % of the server's CPU per message in pipelined
//! echo (docs/performance.md, "session 13"). The module declares that it needs the GIL (`gil_used` in
//! `python/mod.rs`; a free-threaded Python then enables it), so a plain `RefCell`, borrowed with the GIL's
//! token, is enough.

use std::cell::{Ref, RefCell};

use pyo3::Python;

pub struct GilCell<T>(RefCell<T>);

// SAFETY: the cell is only borrowed through `borrow`/`update`, which take the GIL's token, or during
// garbage collection, which runs with the GIL held: one thread at a time touches the `RefCell`, and the GIL's
// release and acquisition order those touches. A `Ref` cannot be moved to a thread without the GIL (it is
// not `Send`), so no borrow outlives its thread's hold of the GIL except across `Python::detach` on that
// same thread, which does not touch it meanwhile.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    /// Panics when the state is being changed: the engine never calls Python code while it holds a
    /// borrow.
    pub fn borrow<'a>(&'a self, _gil: Python<'_>) -> Ref<'a, T> {
        self.0.borrow()
    }

    /// Changes the state; panics when it is borrowed (as `borrow`). What `change` returns reaches the
    /// caller after the borrow ended: values taken out of the state (listeners, futures, a chain) are
    /// dropped there, so a finalizer they run may use the state again.
    pub fn update<R>(&self, _gil: Python<'_>, change: impl FnOnce(&mut T) -> R) -> R {
        change(&mut self.0.borrow_mut())
    }

    /// For `__traverse__`, which is given no token but runs with the GIL held; `None` while the state is
    /// borrowed mutably (the collector then skips it, as PyO3 does for a mutable pyclass).
    pub fn borrow_during_gc(&self) -> Option<Ref<'_, T>> {
        self.0.try_borrow().ok()
    }
}
