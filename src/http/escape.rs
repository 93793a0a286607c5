//! Percent-escapes raw non-ASCII bytes in request lines before hyper sees them.
//!
//! Some senders put unescaped windows-1251 bytes in the URL. The `http` crate
//! refuses a request target that is not UTF-8, so hyper would answer 400 and
//! the event would be lost. This reader rewrites each byte >= 0x80 of a
//! request line as `%XX`, which field extraction then decodes like any other
//! escape. Only request lines are touched: it follows `Content-Length` to skip
//! bodies, and passes a connection through untouched after a chunked body.
//!
//! It also flags a head that carries both `Content-Length` and
//! `Transfer-Encoding`. hyper reads such a request as chunked and drops the
//! length without telling the handler, but a proxy in front may have framed
//! it by the length: the classic request-smuggling split. The flag is an
//! extra header line ([`FRAMING_CONFLICT`]) that the accept loop answers
//! with 400.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The header line added to a head with both `Content-Length` and
/// `Transfer-Encoding`; a request carrying it is refused.
pub const FRAMING_CONFLICT: &str = "x-hookrelay-framing-conflict";

/// The longest header line inspected for `Content-Length`/`Transfer-Encoding`.
const MAX_INSPECTED_LINE: usize = 256;

#[derive(Debug, PartialEq)]
enum State {
    /// In a request line; `started` once a non-CRLF byte was seen.
    RequestLine {
        started: bool,
    },
    Headers {
        line: Vec<u8>,
        length: u64,
        chunked: bool,
        /// Which framing headers this head has carried so far.
        has_length: bool,
        has_encoding: bool,
    },
    Body {
        left: u64,
    },
    /// After a chunked body the framing is not followed any more.
    Passthrough,
}

/// The byte-level rewriter, kept apart from I/O so it can be tested directly.
#[derive(Debug)]
pub struct Escaper {
    state: State,
}

impl Default for Escaper {
    fn default() -> Self {
        Escaper {
            state: State::RequestLine { started: false },
        }
    }
}

impl Escaper {
    /// Appends `input`, rewritten, to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Body { left } => {
                    let take = (*left).min(input.len() as u64) as usize;
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::RequestLine { started: false };
                    }
                }
                State::RequestLine { started } => {
                    let byte = input[0];
                    input = &input[1..];
                    if byte >= 0x80 {
                        out.extend_from_slice(format!("%{byte:02X}").as_bytes());
                    } else {
                        out.push(byte);
                    }
                    match byte {
                        b'\n' if *started => {
                            self.state = State::Headers {
                                line: Vec::new(),
                                length: 0,
                                chunked: false,
                                has_length: false,
                                has_encoding: false,
                            }
                        }
                        b'\r' | b'\n' => {}
                        _ => *started = true,
                    }
                }
                State::Headers {
                    line,
                    length,
                    chunked,
                    has_length,
                    has_encoding,
                } => {
                    let byte = input[0];
                    input = &input[1..];
                    out.push(byte);
                    if byte != b'\n' {
                        if line.len() < MAX_INSPECTED_LINE {
                            line.push(byte);
                        }
                        continue;
                    }
                    let text = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).to_ascii_lowercase();
                    line.clear();
                    if text.is_empty() {
                        self.state = match (*chunked, *length) {
                            (true, _) => State::Passthrough,
                            (false, 0) => State::RequestLine { started: false },
                            (false, left) => State::Body { left },
                        };
                    } else {
                        let both_before = *has_length && *has_encoding;
                        if let Some(value) = text.strip_prefix("content-length:") {
                            *length = value.trim().parse().unwrap_or(0);
                            *has_length = true;
                        } else if let Some(value) = text.strip_prefix("transfer-encoding:") {
                            *chunked |= value.contains("chunked");
                            *has_encoding = true;
                        }
                        if !both_before && *has_length && *has_encoding {
                            out.extend_from_slice(FRAMING_CONFLICT.as_bytes());
                            out.extend_from_slice(b": 1\r\n");
                        }
                    }
                }
            }
        }
    }
}

/// A stream whose reads come through an [`Escaper`]; writes pass straight through.
pub struct EscapeTarget<S> {
    inner: S,
    escaper: Escaper,
    out: Vec<u8>,
    pos: usize,
}

impl<S> EscapeTarget<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        EscapeTarget {
            inner,
            escaper: Escaper::default(),
            out: Vec::new(),
            pos: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EscapeTarget<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.out.len() {
            if this.escaper.state == State::Passthrough {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            this.out.clear();
            this.pos = 0;
            this.escaper.feed(read.filled(), &mut this.out);
        }
        let n = buf.remaining().min(this.out.len() - this.pos);
        buf.put_slice(&this.out[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EscapeTarget<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut escaper = Escaper::default();
        let mut out = Vec::new();
        for chunk in chunks {
            escaper.feed(chunk, &mut out);
        }
        out
    }

    /// High bytes in the request line are escaped; header values are not.
    #[test]
    fn escapes_request_line_only() {
        let out = run(&[b"GET /h?n=\xcf\xf0 HTTP/1.1\r\nX-Name: \xcf\r\n\r\n"]);
        assert_eq!(out, b"GET /h?n=%CF%F0 HTTP/1.1\r\nX-Name: \xcf\r\n\r\n");
    }

    /// Bodies are skipped by Content-Length, and the next request is escaped again,
    /// however the bytes are split into reads.
    #[test]
    fn follows_content_length_across_pipelined_requests() {
        let input: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n\xff\xfe\xfdGET /\xe4 HTTP/1.1\r\n\r\n";
        let expected: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n\xff\xfe\xfdGET /%E4 HTTP/1.1\r\n\r\n";
        assert_eq!(run(&[input]), expected);
        let split: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&split), expected);
    }

    /// After a chunked body the rest of the connection passes through untouched.
    #[test]
    fn chunked_switches_to_passthrough() {
        let input: &[u8] =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n\xff\r\n0\r\n\r\nGET /\xe4 HTTP/1.1\r\n\r\n";
        assert_eq!(run(&[input]), input);
    }

    /// Blank lines before a request line do not end it early.
    #[test]
    fn leading_blank_lines() {
        assert_eq!(
            run(&[b"\r\nGET /\xe4 HTTP/1.1\r\n\r\n"]),
            b"\r\nGET /%E4 HTTP/1.1\r\n\r\n"
        );
    }

    /// Content-Length with Transfer-Encoding, in either order, gets one flag line.
    #[test]
    fn flags_length_with_encoding() {
        let out =
            run(&[b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"]);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches(FRAMING_CONFLICT).count(), 1, "{text}");
        assert!(text.starts_with("POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nx-hookrelay"));
        let split: Vec<&[u8]> = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n"
            .chunks(1)
            .collect();
        assert!(String::from_utf8_lossy(&run(&split)).contains(FRAMING_CONFLICT));
        // Either header alone is not flagged.
        assert!(
            !String::from_utf8_lossy(&run(&[b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"]))
                .contains(FRAMING_CONFLICT)
        );
    }
}
