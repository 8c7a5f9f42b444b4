//! Fuzzes the strict PLY reader and the SN17 strict check: no panic, no large allocation from
//! a small input, and anything accepted must survive write → read → write byte-identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use splatfleet_common::splat::{read_ply, sn17_strict_check, write_ply, PlyLimits};

fuzz_target!(|data: &[u8]| {
    let _ = sn17_strict_check(data);
    let limits = PlyLimits::default();
    if let Ok(decoded) = read_ply(data, &limits) {
        assert_eq!(decoded.report.count, decoded.splat.len());
        let bytes = write_ply(&decoded.splat).expect("a parsed splat is consistent");
        let again = read_ply(&bytes, &limits).expect("our own output parses");
        assert!(again.sn17.passes(), "our own output passes SN17's check");
        let bytes2 = write_ply(&again.splat).expect("consistent");
        assert_eq!(bytes, bytes2, "write -> read -> write is byte-identical");
    }
});
