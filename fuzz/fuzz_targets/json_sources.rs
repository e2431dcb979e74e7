//! The compact `json-message` source encoding on arbitrary input: never panics, and a decoded map
//! encodes to JSON that decodes back to the same map.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::json_sources;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(map)) = json_sources::decode(text) {
        let json = json_sources::encode(&map);
        let again = json_sources::decode(&json)
            .unwrap_or_else(|e| panic!("our own output does not decode: {e}\n{json}"))
            .expect("our own output has sources");
        assert_eq!(map, again, "round trip changed the map\n{json}");
    }
});
