//! Replays every committed fuzz input through its target, uninstrumented:
//! the seed corpora (`fuzz/corpus/<target>/`, minimised by `cargo xtask
//! fuzz --merge`) and the regression inputs (`fuzz/regressions/<target>/`,
//! one file per crash the fuzzer found, kept after the fix).

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    v.sort();
    v
}

fn replay(name: &str) {
    let t = voxline_fuzz::target(name).expect("a known target");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = inputs(&root.join("corpus").join(name));
    let regressions = inputs(&root.join("regressions").join(name));
    assert!(!corpus.is_empty(), "no committed corpus for {name}");
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("readable input");
        let r = std::panic::catch_unwind(|| (t.run)(&data));
        assert!(r.is_ok(), "{name}: {} fails", path.display());
    }
    println!(
        "{name}: {} corpus inputs, {} regression inputs",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn every_target_is_replayed_here() {
    let here = include_str!("replay.rs");
    for t in voxline_fuzz::TARGETS {
        assert!(
            here.contains(&format!("replay_{0}, \"{0}\"", t.name)),
            "no replay test for {}",
            t.name
        );
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("fuzz_targets/{}.rs", t.name))
                .is_file(),
            "no libFuzzer binary for {}",
            t.name
        );
    }
}

macro_rules! replays {
    ($($test:ident, $name:literal;)*) => {
        $(
            #[test]
            fn $test() {
                replay($name);
            }
        )*
    };
}

replays! {
    replay_sip_parser, "sip_parser";
    replay_sip_call, "sip_call";
    replay_sdp, "sdp";
    replay_rtp_rtcp, "rtp_rtcp";
    replay_rtp_session, "rtp_session";
    replay_dtmf, "dtmf";
    replay_jitter, "jitter";
    replay_edge_json, "edge_json";
    replay_engine_openai, "engine_openai";
    replay_engine_gemini, "engine_gemini";
}
