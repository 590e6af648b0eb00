//! Any bytes as a certificate upload: never a panic, never a hang.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = crypto::fuzz_inspect(data);
});
