//! Fuzzes the SPZ decoder. The first byte picks how the rest reaches it: as raw input (the
//! container parsers), or wrapped in zstd / gzip here so the fuzzer explores the payload
//! parser behind a valid container. Anything decoded must re-encode and decode again.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use splatfleet_common::splat::{decode_spz, encode_spz, SpzLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = match mode % 3 {
        0 => rest.to_vec(),
        1 => zstd::bulk::compress(rest, 1).expect("zstd"),
        _ => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(rest).expect("gzip");
            enc.finish().expect("gzip")
        }
    };
    // A 1 M point cap keeps the worst legitimate decompression at ~65 MB.
    let limits = SpzLimits {
        max_points: 1_000_000,
        ..SpzLimits::default()
    };
    if let Ok(decoded) = decode_spz(&input, &limits) {
        let bytes = encode_spz(&decoded.splat).expect("a decoded splat re-encodes");
        let again = decode_spz(&bytes, &limits).expect("our own output decodes");
        assert_eq!(again.splat.len(), decoded.splat.len());
    }
});
