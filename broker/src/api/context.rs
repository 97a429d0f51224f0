//! What a handler knows besides the request body: the shard it runs on, the
//! connection the request came in on, and the request header's fields.

use std::net::SocketAddr;
use std::rc::Rc;

use crate::shard::Shard;

/// Who a connection acts as. Every connection is anonymous until SASL
/// authentication exists; ACL checks will take the principal from here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Principal {
    #[default]
    Anonymous,
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("User:ANONYMOUS"),
        }
    }
}

/// One client connection, shared by its requests.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The client's address; `None` for requests that came in no socket
    /// (in-process tests, the fuzz target).
    pub peer: Option<SocketAddr>,
    pub principal: Principal,
}

/// One request's context, passed to every API handler.
pub struct Context<'a> {
    pub shard: &'a Rc<Shard>,
    pub connection: &'a Connection,
    /// The request's API version.
    pub version: i16,
    /// The header's client id, as the client sent it.
    pub client_id: Option<&'a str>,
}
