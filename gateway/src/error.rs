//! The gateway's errors: what a caller of the server, the client library or the CLI can act
//! on. Protocol violations by a remote peer are not errors of the local process: the server
//! answers them on the wire (ProtocolError) and the client reports them as
//! [`GatewayError::Protocol`].

use crate::protocol::FrameError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the peer broke the protocol: {0}")]
    Protocol(#[from] FrameError),
    #[error("the server sent ProtocolError {code} ({})", crate::protocol::describe_code(*code))]
    ServerProtocolError { code: u16 },
    #[error("login rejected: {}", crate::protocol::describe_code(*code))]
    LoginRejected { code: u16 },
    /// 9016 HistoryDiverged: the messages seen after `replay_from_seq` were lost in a failover.
    #[error(
        "login rejected: the history diverged in a failover: the messages seen after seq {replay_from_seq} (up to {last_seen}) were never issued by this node; log in again from seq {replay_from_seq}"
    )]
    HistoryDiverged {
        last_seen: u64,
        replay_from_seq: u64,
    },
    #[error("the server ended the session: {}", crate::protocol::describe_code(*code))]
    LoggedOut { code: u16 },
    #[error("the connection was closed")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(std::time::Duration),
    #[error("unexpected message from the server: {0}")]
    Unexpected(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}
