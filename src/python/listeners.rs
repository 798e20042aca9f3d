//! Event listeners of one connection, kept in Rust so the drain calls them without a Python-level `emit`.

use pyo3::prelude::*;
use pyo3::PyTraverseError;
use pyo3::PyVisit;

pub struct Listener {
    pub callback: Py<PyAny>,
    pub once: bool,
}

/// 'message' has its own slot (it is the hot path); other events are few, so a short list serves them.
#[derive(Default)]
pub struct Listeners {
    message: Vec<Listener>,
    other: Vec<(Box<str>, Vec<Listener>)>,
}

impl Listeners {
    fn slot_mut(&mut self, event: &str) -> Option<&mut Vec<Listener>> {
        if event == "message" {
            return Some(&mut self.message);
        }
        self.other
            .iter_mut()
            .find(|(name, _)| &**name == event)
            .map(|(_, list)| list)
    }

    pub fn add(&mut self, event: &str, callback: Py<PyAny>, once: bool) {
        let listener = Listener { callback, once };
        match self.slot_mut(event) {
            Some(list) => list.push(listener),
            None => self.other.push((event.into(), vec![listener])),
        }
    }

    /// Removes the first registration of `callback` for `event` (or all of them for the event when None).
    /// Returns what it removed, for the caller to drop once it no longer borrows the connection.
    pub fn remove(
        &mut self,
        py: Python<'_>,
        event: &str,
        callback: Option<&Bound<'_, PyAny>>,
    ) -> Vec<Listener> {
        let Some(list) = self.slot_mut(event) else {
            return Vec::new();
        };
        match callback {
            None => std::mem::take(list),
            Some(target) => list
                .iter()
                .position(|l| l.callback.bind(py).is(target))
                .map(|at| vec![list.remove(at)])
                .unwrap_or_default(),
        }
    }

    pub fn count(&self, event: &str) -> usize {
        if event == "message" {
            return self.message.len();
        }
        self.other
            .iter()
            .find(|(name, _)| &**name == event)
            .map_or(0, |(_, list)| list.len())
    }

    /// The callbacks to call for `event` now, in order; `once` registrations are removed.
    pub fn take_for_call(&mut self, py: Python<'_>, event: &str) -> Callbacks {
        let Some(list) = self.slot_mut(event) else {
            return Callbacks::None;
        };
        match list.as_slice() {
            [] => Callbacks::None,
            [only] if !only.once => Callbacks::One(only.callback.clone_ref(py)),
            _ => {
                let callbacks = list.iter().map(|l| l.callback.clone_ref(py)).collect();
                list.retain(|l| !l.once);
                Callbacks::Many(callbacks)
            }
        }
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for listener in self
            .message
            .iter()
            .chain(self.other.iter().flat_map(|(_, list)| list))
        {
            visit.call(&listener.callback)?;
        }
        Ok(())
    }
}

/// A snapshot of callbacks, taken so that listeners can add or remove listeners while being called.
pub enum Callbacks {
    None,
    One(Py<PyAny>),
    Many(Vec<Py<PyAny>>),
}
