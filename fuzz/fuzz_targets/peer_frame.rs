//! What a peer sends after the handshake, as the receiver reads it: frames (a length that
//! must be bounded before anything is allocated) whose payload, once authenticated, is a
//! message in JSON. A message that parses survives a JSON round trip.
#![no_main]

use haven_peer::wire::{MAX_FRAME, Message, read_frame};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut stream = std::io::Cursor::new(data);
    let mut buffer = Vec::new();
    while let Ok(length) = read_frame(&mut stream, &mut buffer) {
        assert!(length <= MAX_FRAME, "a frame over the limit was read");
        if let Ok(message) = serde_json::from_slice::<Message>(&buffer[..length]) {
            let json = serde_json::to_vec(&message).expect("a message prints");
            let again: Message = serde_json::from_slice(&json).expect("a printed message parses");
            assert_eq!(again, message);
        }
    }
});
