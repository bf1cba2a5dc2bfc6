//! A minimal HTTP/2 client that writes and reads raw frames, for tests that must see exactly
//! which frames the proxy sends (no DATA frame after a HEAD, a GOAWAY during shutdown).
//!
//! Requests are HPACK-encoded as literal fields without indexing (no Huffman), which every
//! decoder accepts; responses are not decoded, only framed.

use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;

/// END_STREAM on DATA/HEADERS (and ACK on SETTINGS/PING).
pub const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame as received.
#[derive(Clone, Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Whether this frame ends (or resets) `stream`.
    pub fn closes(&self, stream: u32) -> bool {
        self.stream == stream
            && (self.kind == RST_STREAM
                || (matches!(self.kind, DATA | HEADERS) && self.flags & END_STREAM != 0))
    }
}

/// A raw HTTP/2 connection (prior knowledge).
pub struct RawH2 {
    io: TcpStream,
}

impl RawH2 {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut io = TcpStream::connect(addr).await.expect("connect");
        io.set_nodelay(true).expect("nodelay");
        io.write_all(PREFACE).await.expect("write preface");
        let mut this = Self { io };
        this.write_frame(SETTINGS, 0, 0, &[]).await;
        this
    }

    async fn write_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).expect("small frame");
        let mut buf = Vec::with_capacity(9 + payload.len());
        buf.extend_from_slice(&len.to_be_bytes()[1..]);
        buf.push(kind);
        buf.push(flags);
        buf.extend_from_slice(&stream.to_be_bytes());
        buf.extend_from_slice(payload);
        self.io.write_all(&buf).await.expect("write frame");
    }

    /// Sends a HEADERS frame (with END_HEADERS) carrying `fields` in order (pseudo-headers
    /// first, lower-case names).
    pub async fn send_headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) {
        let mut block = vec![];
        for (name, value) in fields {
            // Literal header field without indexing, new name (RFC 7541 section 6.2.2).
            block.push(0x00);
            push_string(&mut block, name.as_bytes());
            push_string(&mut block, value.as_bytes());
        }
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        self.write_frame(HEADERS, flags, stream, &block).await;
    }

    /// Sends a DATA frame on `stream`.
    pub async fn send_data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        let flags = if end_stream { END_STREAM } else { 0 };
        self.write_frame(0x0, flags, stream, data).await;
    }

    /// Sends RST_STREAM with `code` on `stream`.
    pub async fn send_reset(&mut self, stream: u32, code: u32) {
        self.write_frame(0x3, 0, stream, &code.to_be_bytes()).await;
    }

    /// Reads the next frame, answering SETTINGS and PING frames as a client must; `None` at
    /// the end of the connection (or on a read error).
    pub async fn read_frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.io.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await.ok()?;
        let frame = Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        };
        // Replies may fail once the server has closed: the read side reports that.
        if frame.kind == SETTINGS && frame.flags & ACK == 0 {
            let mut buf = [0u8; 9];
            buf[3] = SETTINGS;
            buf[4] = ACK;
            let _ = self.io.write_all(&buf).await;
        }
        if frame.kind == PING && frame.flags & ACK == 0 {
            let mut buf = vec![0, 0, 8, PING, ACK, 0, 0, 0, 0];
            buf.extend_from_slice(&frame.payload);
            let _ = self.io.write_all(&buf).await;
        }
        Some(frame)
    }

    /// Reads frames until `stream` is closed by the server (END_STREAM or RST_STREAM) or the
    /// connection ends, within `limit`; returns every frame read.
    pub async fn read_until_closed(&mut self, stream: u32, limit: Duration) -> Vec<Frame> {
        let mut frames = vec![];
        let work = async {
            // Bounded by `limit` (the timeout below) and by the connection's end.
            while let Some(f) = self.read_frame().await {
                let done = f.closes(stream);
                frames.push(f);
                if done {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(limit, work).await;
        frames
    }

    /// Reads frames until the connection ends, within `limit`.
    pub async fn read_to_end(&mut self, limit: Duration) -> (Vec<Frame>, bool) {
        let mut frames = vec![];
        let work = async {
            while let Some(f) = self.read_frame().await {
                frames.push(f);
            }
        };
        let ended = tokio::time::timeout(limit, work).await.is_ok();
        (frames, ended)
    }
}

fn push_string(block: &mut Vec<u8>, s: &[u8]) {
    // A 7-bit prefixed length without Huffman coding; longer strings use continuation bytes.
    if s.len() < 127 {
        block.push(u8::try_from(s.len()).expect("checked length"));
    } else {
        block.push(127);
        let mut rest = s.len() - 127;
        while rest >= 128 {
            block.push(u8::try_from(rest % 128).expect("7 bits") | 0x80);
            rest /= 128;
        }
        block.push(u8::try_from(rest).expect("7 bits"));
    }
    block.extend_from_slice(s);
}
