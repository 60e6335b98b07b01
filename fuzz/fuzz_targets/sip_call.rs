#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| voxline_fuzz::sip::sip_call(data));
