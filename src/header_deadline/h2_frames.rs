//! HTTP/2 framing, followed just far enough to bound header blocks in time: a `HEADERS` (or
//! `PUSH_PROMISE`) frame opens a block that `END_HEADERS` closes, possibly after
//! `CONTINUATION` frames (RFC 9113 §4.3, §6.10). A client that opens a block and then stalls
//! or trickles it holds the connection and the stream; the `h2` crate bounds only the size of
//! a block, not the time it takes. The connection preface is also due by a deadline.

use std::time::Duration;

use tokio::time::Instant;

use super::H2_PREFACE;

const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// Where the client's side of an HTTP/2 connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct H2Frames {
    /// Preface bytes still to come.
    preface: u8,
    /// The frame header being read, `filled` bytes of it so far.
    header: [u8; FRAME_HEADER_LEN],
    filled: u8,
    /// Payload bytes of the current frame still to come.
    payload: u32,
    /// Whether the current frame carries `END_HEADERS`.
    ends_block: bool,
    /// When the preface or the open header block must be complete; `None` otherwise.
    deadline: Option<Instant>,
}

impl H2Frames {
    /// A connection whose preface is still to come, by `deadline`.
    pub(super) fn new(deadline: Option<Instant>) -> Self {
        H2Frames {
            preface: H2_PREFACE.len() as u8,
            header: [0; FRAME_HEADER_LEN],
            filled: 0,
            payload: 0,
            ends_block: false,
            deadline,
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Follows the frames over bytes just read; a header block that starts gets `timeout`.
    pub(super) fn advance(&mut self, mut bytes: &[u8], timeout: Duration) {
        if self.preface > 0 {
            let n = bytes.len().min(usize::from(self.preface));
            self.preface -= n as u8;
            bytes = &bytes[n..];
            if self.preface == 0 {
                self.deadline = None;
            }
        }
        while !bytes.is_empty() {
            if self.payload > 0 {
                let n = bytes.len().min(self.payload as usize);
                self.payload -= n as u32;
                bytes = &bytes[n..];
                if self.payload == 0 {
                    self.frame_done();
                }
                continue;
            }
            let at = usize::from(self.filled);
            let n = bytes.len().min(FRAME_HEADER_LEN - at);
            self.header[at..at + n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.filled += n as u8;
            if usize::from(self.filled) == FRAME_HEADER_LEN {
                self.filled = 0;
                self.frame_started(timeout);
            }
        }
    }

    fn frame_started(&mut self, timeout: Duration) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.payload = u32::from_be_bytes([0, l0, l1, l2]);
        self.ends_block = false;
        if matches!(kind, HEADERS | PUSH_PROMISE | CONTINUATION) {
            if self.deadline.is_none() {
                self.deadline = Some(Instant::now() + timeout);
            }
            self.ends_block = flags & END_HEADERS != 0;
        }
        if self.payload == 0 {
            self.frame_done();
        }
    }

    fn frame_done(&mut self) {
        if self.ends_block {
            self.deadline = None;
            self.ends_block = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn the_preface_is_due_then_only_open_header_blocks() {
        let due = Instant::now() + T;
        let mut f = H2Frames::new(Some(due));
        f.advance(&H2_PREFACE[..10], T);
        assert_eq!(f.deadline(), Some(due), "half a preface is still due");
        let mut rest = H2_PREFACE[10..].to_vec();
        rest.extend(frame(0x4, 0, &[0; 6])); // SETTINGS
        f.advance(&rest, T);
        assert_eq!(f.deadline(), None);
        f.advance(&frame(HEADERS, 0, b"abc"), T);
        assert!(
            f.deadline().is_some(),
            "a block without END_HEADERS is open"
        );
        f.advance(&frame(CONTINUATION, 0, b"d"), T);
        assert!(f.deadline().is_some());
        let last = frame(CONTINUATION, END_HEADERS, b"ef");
        f.advance(&last[..10], T);
        assert!(
            f.deadline().is_some(),
            "the block ends with its last frame's payload"
        );
        f.advance(&last[10..], T);
        assert_eq!(f.deadline(), None);
    }

    #[test]
    fn frames_split_anywhere_are_followed() {
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, &[]));
        bytes.extend(frame(HEADERS, END_HEADERS, &[7; 40]));
        bytes.extend(frame(0x0, 0, &[1; 100])); // DATA
        bytes.extend(frame(HEADERS, 0, &[7; 20]));
        for chunk in 1..=17 {
            let mut f = H2Frames::new(None);
            let mut open_after_data = None;
            for piece in bytes.chunks(chunk) {
                f.advance(piece, T);
            }
            assert!(
                f.deadline().is_some(),
                "chunks of {chunk}: the last block is open"
            );
            // Everything up to the last HEADERS frame leaves no block open.
            let mut g = H2Frames::new(None);
            for piece in bytes[..bytes.len() - 29].chunks(chunk) {
                g.advance(piece, T);
                open_after_data = Some(g.deadline());
            }
            assert_eq!(open_after_data, Some(None), "chunks of {chunk}");
        }
    }

    #[test]
    fn an_empty_headers_frame_with_end_headers_closes_at_once() {
        let mut f = H2Frames::new(None);
        f.advance(H2_PREFACE, T);
        f.advance(&frame(HEADERS, END_HEADERS | 0x1, &[]), T);
        assert_eq!(f.deadline(), None);
    }
}
