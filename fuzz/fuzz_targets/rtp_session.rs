#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| voxline_fuzz::media::rtp_session(data));
