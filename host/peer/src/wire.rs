//! What travels between the two havends, and how.
//!
//! A connection carries one direction: the host that dials sends, the host that accepts
//! receives (each host dials the other, so there are two). On it:
//!
//! 1. the Noise `KK` handshake, two frames, under [`HANDSHAKE_DEADLINE`]: the dialer proves it
//!    holds the private key of the peer's configured public key, and the other way round;
//! 2. transport frames, each one [`Message`] as JSON, encrypted and authenticated with an
//!    implicit counter nonce: a frame replayed, dropped, reordered or altered fails to decrypt,
//!    and the session ends.
//!
//! A frame is a 4-byte big-endian length and that many bytes, at most [`MAX_FRAME`] (Noise's
//! own limit); a longer declared length ends the session before anything is read or allocated.

use crate::keys::{NOISE_PARAMS, PeerKeys};
use haven_core::{HastHook, PeerFacts};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The longest frame: Noise's maximum message.
pub const MAX_FRAME: usize = 65_535;
/// The longest message before encryption (the authentication tag takes 16 bytes).
pub const MAX_MESSAGE: usize = MAX_FRAME - 16;
/// How long the handshake may take, both frames.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);
/// Bound into the handshake: a peer speaking another protocol (or version) fails it.
const PROLOGUE: &[u8] = b"haven peer link 1";

/// One message from the sending havend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Message {
    /// Everything the sender knows of its host; sent on a change and as the heartbeat.
    Facts(PeerFacts),
    /// The sender's hastd ran its `exec` hook.
    Hook(HastHook),
}

/// Why a connection ended or a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("timed out")]
    TimedOut,
    #[error("{0}")]
    Io(std::io::Error),
    #[error("a frame of {0} bytes (1 to {MAX_FRAME} allowed)")]
    Oversized(u64),
    #[error("handshake failed (wrong key, or not a Haven peer): {0}")]
    Handshake(String),
    #[error(
        "a frame failed authentication (replayed, reordered, altered, or from another session)"
    )]
    Unauthentic,
    #[error("a message that is not Haven's: {0}")]
    BadMessage(String),
    #[error("a message of {0} bytes, over the limit of {MAX_MESSAGE}")]
    TooLong(usize),
}

impl WireError {
    /// A short name for counting: one counter per kind of trouble.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Closed => "closed",
            WireError::TimedOut => "timed-out",
            WireError::Io(_) => "io",
            WireError::Oversized(_) => "oversized",
            WireError::Handshake(_) => "handshake",
            WireError::Unauthentic => "unauthentic",
            WireError::BadMessage(_) => "bad-message",
            WireError::TooLong(_) => "too-long",
        }
    }
}

fn io_error(error: std::io::Error) -> WireError {
    match error.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => WireError::TimedOut,
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => WireError::Closed,
        _ => WireError::Io(error),
    }
}

/// Write one frame.
pub fn write_frame(stream: &mut impl Write, bytes: &[u8]) -> Result<(), WireError> {
    let length = u32::try_from(bytes.len()).map_err(|_| WireError::TooLong(bytes.len()))?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).map_err(io_error)
}

/// Read one frame into `buffer` (which keeps its capacity); its length.
pub fn read_frame(stream: &mut impl Read, buffer: &mut Vec<u8>) -> Result<usize, WireError> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).map_err(io_error)?;
    let length = u64::from(u32::from_be_bytes(length));
    if length > MAX_FRAME as u64 || length == 0 {
        return Err(WireError::Oversized(length));
    }
    let length = length as usize;
    buffer.resize(length, 0);
    stream.read_exact(&mut buffer[..length]).map_err(io_error)?;
    Ok(length)
}

/// An authenticated session, one direction.
pub struct Session {
    stream: TcpStream,
    transport: snow::TransportState,
    frame: Vec<u8>,
    plain: Vec<u8>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.stream.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

fn noise(keys: &PeerKeys) -> Result<snow::Builder<'_>, WireError> {
    let handshake = |e: snow::Error| WireError::Handshake(e.to_string());
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e: snow::Error| WireError::Handshake(e.to_string()))?;
    snow::Builder::new(params)
        .local_private_key(&keys.private_key)
        .and_then(|b| b.remote_public_key(&keys.peer_public_key))
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(handshake)
}

/// Which side of the handshake this host plays.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Initiator,
    Responder,
}

impl Session {
    /// The dialer's side: run the handshake as initiator on a connected stream.
    pub fn initiate(stream: TcpStream, keys: &PeerKeys) -> Result<Session, WireError> {
        Session::handshake(stream, keys, Side::Initiator)
    }

    /// The listener's side: run the handshake as responder on an accepted stream.
    pub fn respond(stream: TcpStream, keys: &PeerKeys) -> Result<Session, WireError> {
        Session::handshake(stream, keys, Side::Responder)
    }

    /// The two frames of `KK`: the initiator writes first, the responder answers.
    fn handshake(mut stream: TcpStream, keys: &PeerKeys, side: Side) -> Result<Session, WireError> {
        let handshake = |e: snow::Error| WireError::Handshake(e.to_string());
        let builder = noise(keys)?;
        let mut state = match side {
            Side::Initiator => builder.build_initiator(),
            Side::Responder => builder.build_responder(),
        }
        .map_err(handshake)?;
        handshake_deadlines(&stream)?;
        let (mut frame, mut out) = (Vec::new(), vec![0u8; MAX_FRAME]);
        for writing in [side == Side::Initiator, side == Side::Responder] {
            if writing {
                let written = state.write_message(&[], &mut out).map_err(handshake)?;
                write_frame(&mut stream, &out[..written])?;
            } else {
                let length = read_frame(&mut stream, &mut frame)?;
                state
                    .read_message(&frame[..length], &mut out)
                    .map_err(handshake)?;
            }
        }
        let transport = state.into_transport_mode().map_err(handshake)?;
        Ok(Session {
            stream,
            transport,
            frame,
            plain: out,
        })
    }

    /// Deadlines for each later read and write.
    pub fn set_deadlines(&self, read: Duration, write: Duration) -> Result<(), WireError> {
        self.stream
            .set_read_timeout(Some(read))
            .and_then(|()| self.stream.set_write_timeout(Some(write)))
            .map_err(io_error)
    }

    /// Encrypt and send one message.
    pub fn send(&mut self, message: &Message) -> Result<(), WireError> {
        let json = serde_json::to_vec(message).map_err(|e| WireError::BadMessage(e.to_string()))?;
        if json.len() > MAX_MESSAGE {
            return Err(WireError::TooLong(json.len()));
        }
        let mut out = vec![0u8; json.len() + 16];
        let written = self
            .transport
            .write_message(&json, &mut out)
            .map_err(|_| WireError::Unauthentic)?;
        write_frame(&mut self.stream, &out[..written])
    }

    /// Receive and authenticate one message.
    pub fn receive(&mut self) -> Result<Message, WireError> {
        let length = read_frame(&mut self.stream, &mut self.frame)?;
        let plain = self
            .transport
            .read_message(&self.frame[..length], &mut self.plain)
            .map_err(|_| WireError::Unauthentic)?;
        serde_json::from_slice(&self.plain[..plain])
            .map_err(|e| WireError::BadMessage(e.to_string()))
    }
}

/// The whole handshake must fit in [`HANDSHAKE_DEADLINE`] per read and write.
fn handshake_deadlines(stream: &TcpStream) -> Result<(), WireError> {
    stream
        .set_read_timeout(Some(HANDSHAKE_DEADLINE))
        .and_then(|()| stream.set_write_timeout(Some(HANDSHAKE_DEADLINE)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(io_error)
}
