//! A connection's read buffer: sized for the next read, shrunk after a large request, charged
//! to `--max-pending-bytes` with the connection's queued transaction; and the refusal when it
//! may hold no more.

use super::{BUFFER, Conn, MAX_REQUEST};
use crate::daemon::pending::Charge;
use crate::daemon::protocol;

/// Why a connection is refused more input.
#[derive(Clone, Copy, Debug)]
pub(super) enum Refusal {
    /// One request over [`MAX_REQUEST`].
    TooLarge,
    /// The server's `--max-pending-bytes` is used up.
    PendingFull,
}

/// Sizes the read buffer for the next read and charges what the connection holds — the read
/// buffer's allocation and its queued transaction — to `--max-pending-bytes`.
///
/// The buffer's allocation, not its length, is charged: a buffer grown for a large request
/// keeps its memory after the request completes, until it is shrunk here, as soon as what it
/// holds fits the usual size again. So a connection between requests holds at most two usual
/// buffers (one reserve on top of a nearly full one), which [`FREE_BYTES`] covers.
///
/// [`FREE_BYTES`]: crate::daemon::pending::FREE_BYTES
pub(super) fn hold(buf: &mut Vec<u8>, charge: &mut Charge, conn: &Conn) -> Option<Refusal> {
    if buf.len() > MAX_REQUEST {
        return Some(Refusal::TooLarge);
    }
    if buf.len() <= BUFFER && buf.capacity() > 2 * BUFFER {
        buf.shrink_to(BUFFER);
    }
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(BUFFER);
    }
    if !charge.set(buf.capacity() + conn.txn.bytes()) {
        return Some(Refusal::PendingFull);
    }
    None
}

/// An empty vector with the allocation of `v`, for borrows of another lifetime (the arguments
/// of the next request: the argument list is reused from request to request).
pub(super) fn recycle<'b>(mut v: Vec<&[u8]>) -> Vec<&'b [u8]> {
    v.clear();
    // Collecting an empty vector into one of the same layout reuses its allocation.
    v.into_iter().map(|_| -> &'b [u8] { &[] }).collect()
}

impl Conn {
    /// Replies to a connection refused more input, then closed.
    pub(super) fn refuse(&mut self, refusal: Refusal, peer: Option<std::net::SocketAddr>) {
        self.out.clear();
        let msg = match refusal {
            Refusal::TooLarge => "ERR Protocol error: request too large",
            Refusal::PendingFull => {
                self.shared.metrics.pending_refusals.inc();
                tracing::warn!(
                    ?peer,
                    limit = self.shared.config.max_pending_bytes,
                    "closing a connection: the memory for partly received requests \
                     (--max-pending-bytes) is used up"
                );
                "ERR Protocol error: the server holds too many partly received requests \
                 (--max-pending-bytes); closing this connection, retry later"
            }
        };
        protocol::write_error(&mut self.out, msg);
    }
}
