//! The SNI reader that sees a TLS port's first bytes before any TLS: on any input it must not
//! panic, must stay within its buffer bound, and must be incremental: feeding the same bytes
//! in two pieces (a hello split over TCP segments) never gives a different answer than all
//! at once, and a prefix of a complete hello is never judged as something else.
#![no_main]

use itsup::fuzz_api::{Hello, MAX_HELLO_BYTES, client_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_HELLO_BYTES + 64)];
    let whole = client_hello(data);
    if let Hello::Complete { sni: Some(name) } = &whole {
        assert!(name.len() <= 253);
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
    }
    // The caller reads more only while the answer is Incomplete: the answer at the first
    // cut that is not Incomplete must be the whole input's answer when the input was
    // judged from a complete hello.
    if matches!(whole, Hello::Complete { .. }) {
        for cut in [1, data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
            if cut == 0 || cut >= data.len() {
                continue;
            }
            match client_hello(&data[..cut]) {
                Hello::Incomplete => {}
                early => assert_eq!(early, whole, "cut at {cut}"),
            }
        }
    }
});
