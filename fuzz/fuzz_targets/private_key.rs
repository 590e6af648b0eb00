//! Any bytes as a key file, with the fixtures' password or the first bytes as password.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = crypto::fuzz_decrypt_key(data, b"12345678a");
    if let Some((pw, key)) = data.split_first() {
        let n = usize::from(*pw % 16).min(key.len());
        let _ = crypto::fuzz_decrypt_key(&key[n..], &key[..n]);
    }
});
