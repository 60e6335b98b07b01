//! Speech to text with CMU pocketsphinx, linked from Debian's
//! `libpocketsphinx-dev` (+ `pocketsphinx-en-us` acoustic model).
//!
//! Version: Debian 12 ships `0.8+5prealpha+1` (libpocketsphinx3, with
//! sphinxbase), NOT pocketsphinx 5.0: there is no `ps_config_init` and no
//! `ps_config_t`. Its API is the older one: a sphinxbase `cmd_ln_t` built with
//! `cmd_ln_parse_r(NULL, ps_args(), argc, argv, strict)` (non-variadic, so no
//! C varargs in our FFI), then `ps_init(config)`, `ps_set_jsgf_string` +
//! `ps_set_search` for the grammar, and per utterance
//! `ps_start_utt` / `ps_process_raw` / `ps_end_utt` / `ps_get_hyp`. These
//! ten functions are declared by hand below (bindgen would drag in libclang
//! and the whole sphinxbase header tree for them).
//!
//! Audio: call audio is 8 kHz; the en-us model is 16 kHz. It is fed by SAMPLE
//! REPEAT ([`crate::media::resample::repeat_2x`]), measured far more accurate than a
//! filtered resampler with this model.
//!
//! Vocabulary: each call gets a restricted dictionary (only its words, taken
//! from the model's cmudict; words missing there are reported and dropped,
//! so a script keyword must be a dictionary word) and a bigram language
//! model built on the fly from a tiny corpus: the script's expected answers,
//! the sentences of its own lines (callees echo them: "I can make it
//! tomorrow"), and [`COMMON_REPLIES`] so that off-script replies are
//! recognised as something else rather than forced onto an expected answer.
//! Measured on flite voices (see the tests), this beat a JSGF word loop over
//! the same words by a wide margin (word loops invite short-word insertions)
//! and the model's general 130k-word LM.
//!
//! Decoding runs on a dedicated OS thread per call ([`SttWorker`]), never on
//! the async executor.

// FFI to a C library: the one place the sidecar needs unsafe code (the
// workspace denies it everywhere else).
#![allow(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::media::resample::repeat_2x;

/// Where Debian's `pocketsphinx-en-us` puts the model.
pub const DEFAULT_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";

#[link(name = "pocketsphinx")]
#[link(name = "sphinxbase")]
extern "C" {
    fn ps_args() -> *const c_void;
    fn cmd_ln_parse_r(
        inout: *mut c_void,
        defn: *const c_void,
        argc: i32,
        argv: *mut *mut c_char,
        strict: i32,
    ) -> *mut c_void;
    fn cmd_ln_free_r(cmdln: *mut c_void) -> c_int;
    fn ps_init(config: *mut c_void) -> *mut c_void;
    fn ps_free(ps: *mut c_void) -> c_int;
    fn ps_set_jsgf_string(ps: *mut c_void, name: *const c_char, jsgf: *const c_char) -> c_int;
    fn ps_set_search(ps: *mut c_void, name: *const c_char) -> c_int;
    fn ps_start_utt(ps: *mut c_void) -> c_int;
    fn ps_process_raw(
        ps: *mut c_void,
        data: *const i16,
        n_samples: usize,
        no_search: c_int,
        full_utt: c_int,
    ) -> c_int;
    fn ps_end_utt(ps: *mut c_void) -> c_int;
    fn ps_get_hyp(ps: *mut c_void, out_best_score: *mut i32) -> *const c_char;
    fn err_set_logfile(path: *const c_char) -> c_int;
}

/// Points sphinxbase's one process-wide log at /dev/null (or stderr with
/// `VOXLINE_PS_LOG`), once. Never per decoder: `-logfn` makes every
/// `ps_init` fclose and reopen that shared FILE, which corrupted the heap
/// when calls started and ended on several threads at once.
fn quiet_logs_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = if std::env::var_os("VOXLINE_PS_LOG").is_some() {
            "/dev/stderr"
        } else {
            "/dev/null"
        };
        let c = CString::new(path).expect("no NUL");
        // SAFETY: a valid C string; called once, before any decoder exists.
        unsafe { err_set_logfile(c.as_ptr()) };
    });
}

/// Generic replies every call's language model also learns, so common
/// off-script answers are recognised as themselves instead of being forced
/// onto an expected answer.
pub const COMMON_REPLIES: &[&str] = &[
    "yes",
    "no",
    "yeah",
    "okay",
    "sure",
    "maybe",
    "sorry what",
    "what",
    "who is this",
    "who is calling",
    "hello",
    "hi",
    "sorry",
    "i don't know",
    "i'm not sure",
    "can you repeat that",
    "say that again",
    "i can't talk right now",
    "call me later",
    "call me back later",
    "i'm busy",
    "wrong number",
    "not interested",
    "please hold on",
    "wait a second",
    "thank you",
    "thanks",
    "goodbye",
    "bye",
    "what is this about",
    "i didn't hear you",
    "no thank you",
    "yes please",
];

fn model_dir() -> PathBuf {
    std::env::var_os("VOXLINE_PS_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_DIR))
}

/// cmudict-en-us.dict from the model package: word -> pronunciations. Loaded once.
fn cmudict() -> Result<&'static HashMap<String, Vec<String>>, String> {
    static D: OnceLock<Result<HashMap<String, Vec<String>>, String>> = OnceLock::new();
    D.get_or_init(|| {
        let path = model_dir().join("cmudict-en-us.dict");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut m: HashMap<String, Vec<String>> = HashMap::with_capacity(140_000);
        for line in text.lines() {
            let Some((w, phones)) = line.split_once(' ') else {
                continue;
            };
            let base = w.split('(').next().unwrap_or(w);
            m.entry(base.to_string())
                .or_default()
                .push(phones.trim().to_string());
        }
        Ok(m)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Whether the recognizer knows a word (lower case).
pub fn known_word(w: &str) -> bool {
    cmudict().map(|d| d.contains_key(w)).unwrap_or(false)
}

/// A call's recognition vocabulary: a small corpus of sentences the callee
/// may say, its words (restricted dictionary) and a bigram LM built from it.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    pub sentences: Vec<Vec<String>>,
    pub words: BTreeSet<String>,
    /// Words the dictionary does not know (dropped from the sentences).
    pub unknown: Vec<String>,
}

impl Vocabulary {
    /// `sentences`: normalised word sequences (the script's answers, the
    /// lines the callee may echo); [`COMMON_REPLIES`] are added.
    pub fn build<I: IntoIterator<Item = Vec<String>>>(sentences: I) -> Result<Vocabulary, String> {
        let common = COMMON_REPLIES
            .iter()
            .map(|s| s.split(' ').map(String::from).collect::<Vec<_>>());
        Self::build_exact(sentences.into_iter().chain(common))
    }

    /// Exactly these sentences.
    pub fn build_exact<I: IntoIterator<Item = Vec<String>>>(
        sentences: I,
    ) -> Result<Vocabulary, String> {
        let dict = cmudict()?;
        let mut words = BTreeSet::new();
        let mut unknown = Vec::new();
        let mut out = Vec::new();
        for sent in sentences {
            let mut kept = Vec::new();
            for w in sent {
                if w.is_empty() {
                    continue;
                }
                if dict.contains_key(&w) {
                    words.insert(w.clone());
                    kept.push(w);
                } else if !unknown.contains(&w) {
                    unknown.push(w);
                }
            }
            if !kept.is_empty() && !out.contains(&kept) {
                out.push(kept);
            }
        }
        Ok(Vocabulary {
            sentences: out,
            words,
            unknown,
        })
    }

    fn dict_text(&self) -> String {
        let dict = cmudict().expect("checked in build");
        let mut s = String::new();
        for w in &self.words {
            for (i, p) in dict[w].iter().enumerate() {
                if i == 0 {
                    s.push_str(&format!("{w} {p}\n"));
                } else {
                    s.push_str(&format!("{w}({}) {p}\n", i + 1));
                }
            }
        }
        s
    }

    /// A bigram LM (ARPA text) over the sentences: absolute discounting
    /// (D = 0.5) backing off to add-one unigrams, so any vocabulary word can
    /// follow any other, but the corpus' word orders are strongly preferred.
    pub fn arpa(&self) -> String {
        use std::collections::BTreeMap;
        const D: f64 = 0.5;
        let mut uni: BTreeMap<&str, f64> = BTreeMap::new();
        let mut bi: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for w in &self.words {
            uni.insert(w, 0.0);
        }
        uni.insert("</s>", 0.0);
        for s in &self.sentences {
            let mut prev = "<s>";
            for w in s.iter().map(String::as_str).chain(std::iter::once("</s>")) {
                *uni.get_mut(w).expect("word in vocabulary") += 1.0;
                *bi.entry((prev, w)).or_insert(0.0) += 1.0;
                prev = w;
            }
        }
        let total: f64 = uni.values().sum::<f64>() + uni.len() as f64;
        let p_uni: BTreeMap<&str, f64> = uni.iter().map(|(w, c)| (*w, (c + 1.0) / total)).collect();
        // Per history: count, distinct followers, probability mass of seen followers' unigrams.
        let mut hist: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
        for ((h, w), c) in &bi {
            let e = hist.entry(h).or_insert((0.0, 0.0, 0.0));
            e.0 += c;
            e.1 += 1.0;
            e.2 += p_uni[w];
        }
        let backoff = |h: &str| -> f64 {
            match hist.get(h) {
                Some((n, types, seen_uni)) => (D * types / n) / (1.0 - seen_uni).max(1e-6),
                None => 1.0,
            }
        };
        let mut out = String::from("\\data\\\n");
        out.push_str(&format!(
            "ngram 1={}\nngram 2={}\n\n\\1-grams:\n",
            uni.len() + 1,
            bi.len()
        ));
        out.push_str(&format!("-99.0000 <s> {:.4}\n", backoff("<s>").log10()));
        for (w, p) in &p_uni {
            if *w == "</s>" {
                out.push_str(&format!("{:.4} </s>\n", p.log10()));
            } else {
                out.push_str(&format!("{:.4} {w} {:.4}\n", p.log10(), backoff(w).log10()));
            }
        }
        out.push_str("\n\\2-grams:\n");
        for ((h, w), c) in &bi {
            let n = hist[h].0;
            out.push_str(&format!("{:.4} {h} {w}\n", ((c - D) / n).log10()));
        }
        out.push_str("\n\\end\\\n");
        out
    }

    /// A word loop: any sequence of the vocabulary's words (kept for comparison).
    pub fn jsgf(&self) -> String {
        let alts: Vec<&str> = self.words.iter().map(String::as_str).collect();
        format!(
            "#JSGF V1.0;\ngrammar voxline;\npublic <utt> = <w>+;\n<w> = {};\n",
            alts.join(" | ")
        )
    }
}

/// Which search a [`Recognizer`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// The per-call bigram LM over the call's sentences (default).
    CallLm,
    /// A JSGF loop over the call's words (measured worse; for comparison).
    WordLoop,
    /// The model's general en-us LM and full dictionary (for comparison).
    GeneralLm,
}

/// Default decoder arguments: a low word insertion penalty (short filler
/// words otherwise creep in between the real ones).
pub const DEFAULT_ARGS: &[&str] = &["-wip", "1e-4", "-fillprob", "1e-2", "-silprob", "0.1"];

/// One pocketsphinx decoder with a call's grammar. Not thread-safe: owned by one thread.
pub struct Recognizer {
    ps: *mut c_void,
    up: Vec<i16>,
    in_utt: bool,
}

// SAFETY: the decoder is used by one thread at a time (moved, never shared).
unsafe impl Send for Recognizer {}

impl Recognizer {
    /// The call's LM with [`DEFAULT_ARGS`].
    pub fn new(vocab: &Vocabulary) -> Result<Recognizer, String> {
        Self::with_args(vocab, DEFAULT_ARGS, Search::CallLm)
    }

    /// `extra`: pocketsphinx arguments (`-wip`, ...) after ours.
    pub fn with_args(
        vocab: &Vocabulary,
        extra: &[&str],
        search: Search,
    ) -> Result<Recognizer, String> {
        if vocab.words.is_empty() {
            return Err("empty vocabulary".into());
        }
        let dir = model_dir();
        let hmm = dir.join("en-us");
        if !hmm.join("mdef").exists() {
            return Err(format!(
                "pocketsphinx model not found at {} (apt: pocketsphinx-en-us)",
                hmm.display()
            ));
        }
        // Dictionary and LM must be files: private temp files, removed after init.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = |ext: &str| {
            std::env::temp_dir().join(format!("voxline-ps-{}-{n}.{ext}", std::process::id()))
        };
        let (dict_path, lm_path) = (tmp("dict"), tmp("lm"));
        let mut temps = vec![];
        let (dict, lm) = match search {
            Search::GeneralLm => (
                dir.join("cmudict-en-us.dict"),
                Some(dir.join("en-us.lm.bin")),
            ),
            Search::CallLm | Search::WordLoop => {
                std::fs::write(&dict_path, vocab.dict_text())
                    .map_err(|e| format!("{}: {e}", dict_path.display()))?;
                temps.push(dict_path.clone());
                if search == Search::CallLm {
                    std::fs::write(&lm_path, vocab.arpa())
                        .map_err(|e| format!("{}: {e}", lm_path.display()))?;
                    temps.push(lm_path.clone());
                    (dict_path, Some(lm_path))
                } else {
                    (dict_path, None)
                }
            }
        };
        quiet_logs_once();
        let mut args: Vec<String> = vec![
            "-hmm".into(),
            hmm.to_string_lossy().into(),
            "-dict".into(),
            dict.to_string_lossy().into(),
            "-samprate".into(),
            "16000".into(),
        ];
        if let Some(lm) = &lm {
            args.push("-lm".into());
            args.push(lm.to_string_lossy().into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<CString> = args
            .iter()
            .map(|s| CString::new(s.as_str()).unwrap())
            .collect();
        let mut argv: Vec<*mut c_char> = args.iter().map(|s| s.as_ptr() as *mut c_char).collect();
        // SAFETY: argv points at live CStrings for the duration of the calls;
        // ps_init retains the config, so we release our reference after it.
        let ps = unsafe {
            let cfg = cmd_ln_parse_r(
                std::ptr::null_mut(),
                ps_args(),
                argv.len() as i32,
                argv.as_mut_ptr(),
                1,
            );
            if cfg.is_null() {
                std::ptr::null_mut()
            } else {
                let ps = ps_init(cfg);
                cmd_ln_free_r(cfg);
                ps
            }
        };
        for t in temps {
            let _ = std::fs::remove_file(t);
        }
        if ps.is_null() {
            return Err("pocketsphinx init failed (set VOXLINE_PS_LOG=1 for its log)".into());
        }
        let r = Recognizer {
            ps,
            up: Vec::with_capacity(320),
            in_utt: false,
        };
        if search != Search::WordLoop {
            return Ok(r);
        }
        let name = CString::new("voxline").unwrap();
        let jsgf = CString::new(vocab.jsgf()).map_err(|e| e.to_string())?;
        // SAFETY: ps is live; strings are valid C strings.
        unsafe {
            if ps_set_jsgf_string(r.ps, name.as_ptr(), jsgf.as_ptr()) != 0 {
                return Err("pocketsphinx rejected the grammar".into());
            }
            if ps_set_search(r.ps, name.as_ptr()) != 0 {
                return Err("pocketsphinx could not select the grammar".into());
            }
        }
        Ok(r)
    }

    /// Starts an utterance (ends a running one first, discarding it).
    pub fn start(&mut self) {
        if self.in_utt {
            let _ = self.finish();
        }
        // SAFETY: ps is live.
        unsafe { ps_start_utt(self.ps) };
        self.in_utt = true;
    }

    /// Feeds 8 kHz audio (upsampled by sample repeat).
    pub fn process_8k(&mut self, pcm: &[i16]) {
        if !self.in_utt {
            self.start();
        }
        self.up.clear();
        repeat_2x(pcm, &mut self.up);
        // SAFETY: ps is live, the buffer is valid for up.len() samples.
        unsafe { ps_process_raw(self.ps, self.up.as_ptr(), self.up.len(), 0, 0) };
    }

    /// Feeds 16 kHz audio as is (for comparisons).
    pub fn process_16k(&mut self, pcm: &[i16]) {
        if !self.in_utt {
            self.start();
        }
        // SAFETY: as in process_8k.
        unsafe { ps_process_raw(self.ps, pcm.as_ptr(), pcm.len(), 0, 0) };
    }

    /// The best hypothesis so far, the utterance going on (lower case; empty
    /// outside an utterance).
    pub fn partial(&mut self) -> String {
        if !self.in_utt {
            return String::new();
        }
        // SAFETY: ps is live and in an utterance (partial results are
        // supported there); the hyp string is copied at once.
        unsafe {
            let mut score = 0i32;
            let h = ps_get_hyp(self.ps, &mut score);
            if h.is_null() {
                return String::new();
            }
            CStr::from_ptr(h).to_string_lossy().to_lowercase()
        }
    }

    /// Ends the utterance; the best hypothesis, lower case, words separated by spaces.
    pub fn finish(&mut self) -> String {
        if !self.in_utt {
            return String::new();
        }
        self.in_utt = false;
        // SAFETY: ps is live; the hyp string is owned by the decoder and copied at once.
        unsafe {
            ps_end_utt(self.ps);
            let mut score = 0i32;
            let h = ps_get_hyp(self.ps, &mut score);
            if h.is_null() {
                return String::new();
            }
            CStr::from_ptr(h).to_string_lossy().to_lowercase()
        }
    }
}

impl Drop for Recognizer {
    fn drop(&mut self) {
        // SAFETY: ps came from ps_init and is freed once.
        unsafe { ps_free(self.ps) };
    }
}

/// Commands to a call's recognizer thread.
#[derive(Debug)]
pub enum SttCmd {
    /// Begin an utterance that started at `start_ms` (stream time).
    Start,
    Audio(Vec<i16>),
    /// End the utterance; the result carries these offsets back.
    End {
        start_ms: u64,
        end_ms: u64,
    },
    /// Drop the current utterance without a result.
    Cancel,
    /// The words so far, the utterance going on: a result with `partial`
    /// set and `end_ms` = this `voiced_end_ms` (which pause it was asked in).
    Peek {
        voiced_end_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SttResult {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Wall time the decoder spent finishing the utterance.
    pub decode_ms: u64,
    /// An answer to [`SttCmd::Peek`]: the utterance goes on.
    pub partial: bool,
}

/// A dedicated decoding thread per call. Dropping the handle ends the thread.
pub struct SttWorker {
    tx: std::sync::mpsc::Sender<SttCmd>,
}

impl SttWorker {
    /// Spawns the thread and builds the decoder there; returns once it is
    /// ready (or failed). Blocking for the model load (~0.1-0.3 s): call from
    /// `spawn_blocking`.
    pub fn spawn(
        vocab: Vocabulary,
        results: tokio::sync::mpsc::UnboundedSender<SttResult>,
    ) -> Result<SttWorker, String> {
        let (tx, rx) = std::sync::mpsc::channel::<SttCmd>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
        std::thread::Builder::new()
            .name("voxline-stt".into())
            .spawn(move || {
                let mut rec = match Recognizer::new(&vocab) {
                    Ok(r) => {
                        let _ = ready_tx.send(Ok(()));
                        r
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        SttCmd::Start => rec.start(),
                        SttCmd::Audio(pcm) => rec.process_8k(&pcm),
                        SttCmd::End { start_ms, end_ms } => {
                            let t = std::time::Instant::now();
                            let text = rec.finish();
                            let decode_ms = t.elapsed().as_millis() as u64;
                            if results
                                .send(SttResult {
                                    text,
                                    start_ms,
                                    end_ms,
                                    decode_ms,
                                    partial: false,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                        SttCmd::Cancel => {
                            let _ = rec.finish();
                        }
                        SttCmd::Peek { voiced_end_ms } => {
                            let t = std::time::Instant::now();
                            let text = rec.partial();
                            let decode_ms = t.elapsed().as_millis() as u64;
                            if results
                                .send(SttResult {
                                    text,
                                    start_ms: 0,
                                    end_ms: voiced_end_ms,
                                    decode_ms,
                                    partial: true,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        ready_rx
            .recv()
            .map_err(|_| "stt thread died".to_string())??;
        Ok(SttWorker { tx })
    }

    pub fn send(&self, cmd: SttCmd) {
        let _ = self.tx.send(cmd);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tts::{synthesize, Voice};
    use super::*;

    fn sent(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn vocabulary_drops_unknown_words_and_builds_an_lm() {
        let v = Vocabulary::build_exact([sent("yes zzqxv i can"), sent("can't")]).unwrap();
        assert!(v.words.contains("yes") && v.words.contains("can't"));
        assert_eq!(v.unknown, vec!["zzqxv".to_string()]);
        assert_eq!(v.sentences[0], sent("yes i can"));
        let arpa = v.arpa();
        assert!(arpa.contains("ngram 1=6\nngram 2=6"), "{arpa}");
        assert!(arpa.contains(" <s> yes\n") && arpa.contains(" can </s>\n"));
        assert!(v.jsgf().contains("<w> = can | can't | i | yes;"));
    }

    #[test]
    fn recognizes_flite_speech_at_8k() {
        let vocab = Vocabulary::build([
            sent("yes i can make it"),
            sent("no i cannot"),
            sent("tomorrow"),
        ])
        .unwrap();
        let mut rec = Recognizer::new(&vocab).unwrap();
        for (text, voice) in [
            ("yes I can make it", Voice::Slt),
            ("no I cannot", Voice::Rms),
        ] {
            let pcm = synthesize(text, voice).unwrap();
            rec.start();
            rec.process_8k(&vec![0; 2400]);
            for f in pcm.chunks(160) {
                rec.process_8k(f);
            }
            rec.process_8k(&vec![0; 2400]);
            let hyp = rec.finish();
            eprintln!("{voice:?}: {text:?} -> {hyp:?}");
            assert!(
                hyp.contains(text.split(' ').next().unwrap().to_lowercase().as_str()),
                "{hyp:?}"
            );
        }
    }
}
