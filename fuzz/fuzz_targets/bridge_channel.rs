//! Bridge-channel JSON on arbitrary input: never panics, and whatever parses serialises to JSON that
//! parses back to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::bridge_channel::BridgeChannelMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = BridgeChannelMessage::parse(text) {
        let json = msg.to_json();
        let again = BridgeChannelMessage::parse(&json)
            .unwrap_or_else(|e| panic!("our own output does not parse: {e}\n{json}"));
        assert_eq!(msg, again, "round trip changed the message\n{json}");
    }
});
