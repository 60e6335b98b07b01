#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| voxline_fuzz::edge::edge_json(data));
