//! HTTP/1.1 on the WebSocket port: reading request heads and bodies, the plain HTTP route table, the
//! request handed to Python and the response written back. `httparse` parses; the loop that serves a
//! connection's requests is `net::front`.

mod body;
pub(super) mod chunked;
mod head;
mod request;
mod response;
mod routes;

pub use body::{read_body, BodyError, Framing};
pub use head::{has_token, parse_head, read_head, HeadRead, MAX_HEADERS};
pub use request::{Answer, Request};
pub use response::{format_response, http_response, Persistence};
pub use routes::{HttpRoute, HttpRoutes, Routed};
