//! The only place where tokio meets Python: events from the I/O threads wait in one queue, and the asyncio
//! loop is woken through an eventfd only when the queue goes from idle to busy.

mod backlog;
mod event;
mod queue;
mod wake_fd;

pub use backlog::{InboundBacklog, EVENT_OVERHEAD};
pub use event::Event;
pub use queue::{EventQueue, QueueStats, Traffic};
