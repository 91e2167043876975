//! `proxy.yml` as `itsup proxy` reads it at start and on every reload: never a panic, and a
//! rejected file always says why.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = itsup::fuzz_api::proxy_config(text, "proxy.yml") {
        assert!(!e.to_string().is_empty());
    }
});
