//! The agent's request line (what HAProxy's `agent-send` delivers, or anyone who can reach the
//! agent's port): never a panic; what it accepts is a well-formed target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = itsup::fuzz_api::agent_request(data) {
        assert!(
            !req.target.host.is_empty(),
            "accepted an empty host: {req:?}"
        );
        assert!(
            !req.target.host.contains(char::is_whitespace),
            "host with whitespace: {req:?}"
        );
    }
});
