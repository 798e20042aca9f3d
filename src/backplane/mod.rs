//! Pub/sub across processes and machines through a broker (Redis or NATS): what one node publishes reaches
//! the subscribers of every node. See docs/scale-out.md for the design and its reasons.

mod envelope;
mod subjects;

pub use envelope::Envelope;
pub use subjects::{Dialect, Naming, Subscription};
