//! The offline `local` engine end to end: a simulated callee (flite `slt`,
//! through G.711 mu-law and a little line noise) talks to the engine (flite
//! `kal16`) in 20 ms frames, faster than real time; a simulated player
//! consumes the engine's audio at 20 ms per frame and reports `played()`,
//! dropping queued audio on `Interrupt`, as the call task does.
//!
//! Tests run one at a time (a shared lock) so the CPU measurement is clean.
#![cfg(feature = "local-engine")]

use std::time::{Duration, Instant};

use voxline_media_sidecar::engine::local::script::normalize;
use voxline_media_sidecar::engine::local::tts::{synthesize, Voice};
use voxline_media_sidecar::engine::local::LocalEngine;
use voxline_media_sidecar::engine::{
    Engine, EngineConfig, EngineEvent, FirstSpeaker, FRAME_SAMPLES,
};
use voxline_media_sidecar::media::g711::Law;
use voxline_shared::sidecar_link::Role;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DEMO: &str = "You are a friendly receptionist for Demo Dental.\n[script]\n\
greeting: Hi, this is Demo Dental calling to confirm your appointment tomorrow at 10. Can you make it?\n\
yes|yeah|sure|i can -> Great, see you tomorrow. Goodbye!  [end]\n\
no|can't|cannot -> No problem, we will call you to reschedule. Goodbye! [end]\n\
* -> Sorry, I didn't catch that. Can you make it tomorrow at 10?\n\
silence 8s -> Are you still there?\n\
goodbye: Thank you, goodbye.\n\
[/script]";

#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// After the n-th (1-based) AI line has finished playing, plus a gap.
    AfterAiLine(usize, u64),
    /// This long after the n-th AI line started playing (talks over it).
    IntoAiLine(usize, u64),
    /// At this time of the call (ms after the answer).
    At(u64),
}

struct Turn {
    trigger: Trigger,
    text: &'static str,
}

#[derive(Debug, Default)]
struct Outcome {
    events: Vec<(u64, EngineEvent)>,
    user: Vec<(String, u64, u64)>,
    ai: Vec<String>,
    interrupts: usize,
    end: Option<(u64, String)>,
    ms: u64,
    /// What the callee said, in order.
    said: Vec<&'static str>,
}

struct Noise(u32);
impl Noise {
    fn next(&mut self) -> i16 {
        self.0 = self.0.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        ((self.0 >> 16) as i32 % 61 - 30) as i16
    }
}

fn line_channel(pcm: &[i16], noise: &mut Noise) -> Vec<i16> {
    let mut codes = Vec::new();
    let noisy: Vec<i16> = pcm
        .iter()
        .map(|&s| s.saturating_add(noise.next()))
        .collect();
    Law::Mu.encode(&noisy, &mut codes);
    let mut out = Vec::new();
    Law::Mu.decode(&codes, &mut out);
    out
}

fn config(prompt: Option<&str>) -> EngineConfig {
    let mut c = EngineConfig::new("call-test", "en-US");
    c.system_prompt = prompt.map(String::from);
    c.voice = Some("kal16".into());
    c
}

/// Runs one simulated call for at most `max_ms` of audio.
async fn run_call(engine: &mut LocalEngine, turns: Vec<Turn>, max_ms: u64) -> Outcome {
    let mut o = Outcome::default();
    let mut noise = Noise(99);
    let mut turns = turns.into_iter().peekable();
    let mut speaking: Vec<i16> = Vec::new();
    let mut spoken_pos = 0;
    let mut playout: std::collections::VecDeque<i16> = Default::default();
    let mut played_ms = 0u64;
    let mut ai_started: Vec<u64> = Vec::new(); // clock when each AI line began playing
    let mut ai_done: Vec<u64> = Vec::new();
    let mut line_playing = false;
    let mut ending = false;
    let mut t = 0u64;
    while t < max_ms {
        // Callee side.
        if spoken_pos >= speaking.len() {
            if let Some(turn) = turns.peek() {
                let due = match turn.trigger {
                    Trigger::AfterAiLine(n, gap) => ai_done.get(n - 1).map(|d| d + gap),
                    Trigger::IntoAiLine(n, after) => ai_started.get(n - 1).map(|s| s + after),
                    Trigger::At(at) => Some(at),
                };
                if due.is_some_and(|d| t >= d) {
                    let turn = turns.next().unwrap();
                    o.said.push(turn.text);
                    speaking =
                        line_channel(&synthesize(turn.text, Voice::Slt).unwrap(), &mut noise);
                    spoken_pos = 0;
                }
            }
        }
        let frame: Vec<i16> = if spoken_pos < speaking.len() {
            let end = (spoken_pos + FRAME_SAMPLES).min(speaking.len());
            let mut f = speaking[spoken_pos..end].to_vec();
            f.resize(FRAME_SAMPLES, 0);
            spoken_pos = end;
            f
        } else {
            line_channel(&[0; FRAME_SAMPLES], &mut noise)
        };
        engine.send_audio(&frame).await.unwrap();
        // Player side: 20 ms of engine audio per frame.
        let n = playout.len().min(FRAME_SAMPLES);
        if n > 0 && !line_playing {
            line_playing = true;
            ai_started.push(t);
        }
        playout.drain(..n);
        played_ms += n as u64 / 8;
        engine.played(played_ms);
        t += 20;
        // Engine events (wait for the recognizer when it is working; a
        // result may yield no event, e.g. the words so far in a pause).
        let waiting_since = Instant::now();
        loop {
            let ev = match engine.try_event() {
                Some(e) => e,
                None if engine.stt_pending() > 0 => {
                    assert!(
                        waiting_since.elapsed() < Duration::from_secs(10),
                        "stt: no result"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                None => break,
            };
            match &ev {
                EngineEvent::Audio(a) => playout.extend(a.iter().copied()),
                EngineEvent::Interrupt => {
                    playout.clear();
                    o.interrupts += 1;
                }
                EngineEvent::Transcript {
                    role: Role::Agent,
                    text,
                    ..
                } => {
                    o.ai.push(text.clone());
                    ai_done.push(t);
                    line_playing = false;
                }
                EngineEvent::Transcript {
                    role: Role::Callee,
                    text,
                    start_ms,
                    end_ms,
                } => o.user.push((text.clone(), *start_ms, *end_ms)),
                EngineEvent::EndCall { reason } => {
                    o.end = Some((t, reason.clone()));
                    ending = true;
                }
                _ => {}
            }
            o.events.push((t, ev));
        }
        if ending && playout.is_empty() {
            break;
        }
    }
    o.ms = t;
    o
}

fn print(name: &str, o: &Outcome) {
    eprintln!("--- {name}: {} ms simulated", o.ms);
    for (t, e) in &o.events {
        match e {
            EngineEvent::Audio(_) => {}
            e => eprintln!("  {t:>6} {e:?}"),
        }
    }
}

/// Issue 17: started while the phone rings, the engine loads its recognizer
/// and synthesises its lines up front, then says nothing (no greeting, no
/// clock running out) until told the callee answered; then it greets at once.
#[tokio::test]
async fn started_while_ringing_it_greets_only_at_the_answer() {
    let _g = SERIAL.lock().await;
    let mut c = config(Some(DEMO));
    c.greet_on_answer = true;
    let mut e = LocalEngine::connect(c).await.unwrap();
    // A ring longer than its silence handling would allow: still nothing.
    assert!(e.try_event().is_none());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), e.next_event())
            .await
            .is_err(),
        "an event before the answer"
    );
    e.answered();
    assert!(e.now_ms() < 100, "its clock starts at the answer");
    let first = tokio::time::timeout(Duration::from_secs(5), e.next_event())
        .await
        .expect("the greeting at once")
        .unwrap();
    assert!(
        matches!(first, EngineEvent::Audio(ref a) if !a.is_empty()),
        "{first:?}"
    );
    e.close().await;
}

/// Issue 17, `first_speaker: callee`: answered, the engine says nothing
/// while the callee is silent and while they say "Hello?"; it greets when
/// their turn ends, takes their first words for a hello (not an answer to
/// the script), and the script goes on from there.
#[tokio::test]
async fn callee_first_greets_only_after_the_callee_spoke() {
    let _g = SERIAL.lock().await;
    let mut c = config(Some(DEMO));
    c.greet_on_answer = true;
    c.first_speaker = FirstSpeaker::Callee;
    let mut e = LocalEngine::connect(c).await.unwrap();
    e.answered();
    assert!(e.greeting_held());
    let hello_at = 1_500;
    let hello_ms = synthesize("Hello?", Voice::Slt).unwrap().len() as u64 / 8;
    let o = run_call(
        &mut e,
        vec![
            Turn {
                trigger: Trigger::At(hello_at),
                text: "Hello?",
            },
            Turn {
                trigger: Trigger::AfterAiLine(1, 500),
                text: "Yes, I can make it.",
            },
        ],
        60_000,
    )
    .await;
    print("callee first", &o);
    let first_audio = o
        .events
        .iter()
        .find(|(_, e)| matches!(e, EngineEvent::Audio(_)))
        .map(|(t, _)| *t)
        .expect("a greeting");
    assert!(
        first_audio >= hello_at + hello_ms,
        "greeted at {first_audio} ms, before the callee's hello ended ({} ms)",
        hello_at + hello_ms
    );
    assert!(
        first_audio < hello_at + hello_ms + 1_500,
        "greeted only at {first_audio} ms"
    );
    assert_eq!(o.ai.first(), Some(&e.script().greeting), "{:?}", o.ai);
    // "Hello?" is not taken for an answer (no reprompt): the yes is.
    assert_eq!(
        o.ai.get(1).map(String::as_str),
        Some("Great, see you tomorrow. Goodbye!"),
        "{:?} {:?}",
        o.ai,
        o.user
    );
    assert_eq!(o.user.len(), 2, "{:?}", o.user);
    assert!(o.end.is_some());
    e.close().await;

    // A callee who says nothing is greeted after the wait, not never.
    let mut c = config(Some(DEMO));
    c.first_speaker = FirstSpeaker::Callee;
    let mut e = LocalEngine::connect(c).await.unwrap();
    let o = run_call(&mut e, vec![], 5_000).await;
    let first_audio = o
        .events
        .iter()
        .find(|(_, e)| matches!(e, EngineEvent::Audio(_)))
        .map(|(t, _)| *t)
        .expect("a greeting after the wait");
    assert!(
        (3_000..3_200).contains(&first_audio),
        "greeted at {first_audio} ms"
    );
    e.close().await;
}

/// Issue 17: a pause after words that answer the script, or that sound
/// finished although the script does not know them, ends the callee's turn
/// early (`quick_endpoint_ms`) instead of after the VAD's full 700 ms
/// hangover. (Words that trail off keep the hangover:
/// `script::sounds_finished`'s unit test.)
#[tokio::test]
async fn a_finished_turn_ends_before_the_full_hangover() {
    let _g = SERIAL.lock().await;
    // A script whose only answer is a long phrase nobody says here: the
    // recognizer's words never match it, yet they sound finished.
    let unmatched = DEMO
        .replace(
            "yes|yeah|sure|i can ->",
            "absolutely certainly yes indeed ->",
        )
        .replace("no|can't|cannot ->", "definitely certainly not indeed ->");
    // (what the callee says, the script)
    for (said, script) in [
        ("Yes, I can make it.", DEMO.to_string()),
        ("Yes, I can make it.", unmatched),
    ] {
        let mut e = LocalEngine::connect(config(Some(&script))).await.unwrap();
        let o = run_call(
            &mut e,
            vec![Turn {
                trigger: Trigger::AfterAiLine(1, 500),
                text: said,
            }],
            40_000,
        )
        .await;
        print(said, &o);
        let &(_, _, spoke_until) = o.user.first().expect("transcribed");
        // The reply: the first audio after the callee's turn.
        let reply_at = o
            .events
            .iter()
            .filter(|(t, e)| *t > spoke_until && matches!(e, EngineEvent::Audio(_)))
            .map(|(t, _)| *t)
            .next()
            .expect("a reply");
        let wait = reply_at - spoke_until;
        assert!(
            wait < 600,
            "{said:?}: replied {wait} ms after the last voiced frame (the hangover is 700)"
        );
        e.close().await;
    }
}

#[tokio::test]
async fn yes_answer_follows_script_and_ends() {
    let _g = SERIAL.lock().await;
    let mut e = LocalEngine::connect(config(Some(DEMO))).await.unwrap();
    let o = run_call(
        &mut e,
        vec![Turn {
            trigger: Trigger::AfterAiLine(1, 500),
            text: "Yes, I can make it.",
        }],
        60_000,
    )
    .await;
    print("yes", &o);
    assert!(o.ai[0].starts_with("Hi, this is Demo Dental"), "{:?}", o.ai);
    assert_eq!(o.user.len(), 1, "{:?}", o.user);
    assert!(
        normalize(&o.user[0].0).contains(&"yes".to_string()),
        "{:?}",
        o.user
    );
    assert_eq!(
        o.ai.get(1).map(String::as_str),
        Some("Great, see you tomorrow. Goodbye!")
    );
    let (end_t, reason) = o.end.clone().expect("EndCall");
    assert_eq!(reason, "script_end");
    // EndCall only after the goodbye line's transcript (i.e. once it was played).
    let goodbye_pos = o.events.iter().position(|(_, e)| matches!(e, EngineEvent::Transcript { role: Role::Agent, text, .. } if text.contains("Great"))).unwrap();
    let end_pos = o
        .events
        .iter()
        .position(|(_, e)| matches!(e, EngineEvent::EndCall { .. }))
        .unwrap();
    assert!(end_pos > goodbye_pos);
    assert!(o
        .events
        .iter()
        .any(|(_, e)| matches!(e, EngineEvent::Summary { outcome: Some(x), .. } if x == "yes")));
    // User turn offsets are plausible: it starts after the greeting ended.
    let greet_ms = synthesize(&e.script().greeting, Voice::Kal16)
        .unwrap()
        .len() as u64
        / 8;
    let (_, s, en) = o.user[0];
    assert!(
        s >= greet_ms && en > s && en - s < 3_000,
        "user turn {s}..{en}, greeting {greet_ms} ms"
    );
    assert!(end_t < 20_000);
    e.close().await;
}

#[tokio::test]
async fn no_match_reprompts_then_no_ends() {
    let _g = SERIAL.lock().await;
    let mut e = LocalEngine::connect(config(Some(DEMO))).await.unwrap();
    let o = run_call(
        &mut e,
        vec![
            Turn {
                trigger: Trigger::AfterAiLine(1, 400),
                text: "Who is this?",
            },
            Turn {
                trigger: Trigger::AfterAiLine(2, 400),
                text: "No, I can't make it.",
            },
        ],
        60_000,
    )
    .await;
    print("no-match then no", &o);
    assert_eq!(
        o.ai.get(1).map(String::as_str),
        Some("Sorry, I didn't catch that. Can you make it tomorrow at 10?"),
        "{:?} {:?}",
        o.ai,
        o.user
    );
    assert_eq!(
        o.ai.get(2).map(String::as_str),
        Some("No problem, we will call you to reschedule. Goodbye!"),
        "{:?} {:?}",
        o.ai,
        o.user
    );
    assert!(o.end.is_some());
    e.close().await;
}

#[tokio::test]
async fn silence_prompts_then_goodbye() {
    let _g = SERIAL.lock().await;
    let mut e = LocalEngine::connect(config(Some(DEMO))).await.unwrap();
    let o = run_call(&mut e, vec![], 60_000).await;
    print("silence", &o);
    assert!(
        o.user.is_empty(),
        "line noise recognised as speech: {:?}",
        o.user
    );
    assert_eq!(o.ai.len(), 4, "{:?}", o.ai);
    assert_eq!(&o.ai[1], "Are you still there?");
    assert_eq!(&o.ai[2], "Are you still there?");
    assert_eq!(&o.ai[3], "Thank you, goodbye.");
    assert_eq!(
        o.end.as_ref().map(|x| x.1.as_str()),
        Some("retries_exhausted")
    );
    // ~8 s of silence before each prompt.
    let times: Vec<u64> = o
        .events
        .iter()
        .filter(|(_, e)| matches!(e, EngineEvent::Transcript { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert!(o.ms > 24_000 && o.ms < 40_000, "{} ms {times:?}", o.ms);
    e.close().await;
}

#[tokio::test]
async fn barge_in_interrupts_the_greeting() {
    let _g = SERIAL.lock().await;
    let mut e = LocalEngine::connect(config(Some(DEMO))).await.unwrap();
    let o = run_call(
        &mut e,
        vec![Turn {
            trigger: Trigger::IntoAiLine(1, 1500),
            text: "Yeah, sure, I can.",
        }],
        60_000,
    )
    .await;
    print("barge-in", &o);
    assert_eq!(o.interrupts, 1);
    let int_pos = o
        .events
        .iter()
        .position(|(_, e)| matches!(e, EngineEvent::Interrupt))
        .unwrap();
    // The greeting transcript is truncated to what was heard.
    assert!(
        o.ai[0].ends_with("...") && o.ai[0].len() < e.script().greeting.len(),
        "{:?}",
        o.ai
    );
    let (t_int, _) = o.events[int_pos];
    // The callee starts 1500 ms into the line; `barge_in_ms` (100) later it is cut.
    assert!((1_600..2_000).contains(&t_int), "interrupt at {t_int}");
    assert_eq!(
        o.ai.get(1).map(String::as_str),
        Some("Great, see you tomorrow. Goodbye!"),
        "{:?} {:?}",
        o.ai,
        o.user
    );
    assert!(o.end.is_some());
    e.close().await;
}

#[tokio::test]
async fn default_script_without_block() {
    let _g = SERIAL.lock().await;
    let prompt = "Hello, this is Acme Corp calling about your recent order. Be brief and polite.";
    let mut e = LocalEngine::connect(config(Some(prompt))).await.unwrap();
    let o = run_call(
        &mut e,
        vec![Turn {
            trigger: Trigger::AfterAiLine(1, 400),
            text: "Okay, thank you.",
        }],
        60_000,
    )
    .await;
    print("default script", &o);
    assert_eq!(
        o.ai[0],
        "Hello, this is Acme Corp calling about your recent order."
    );
    assert_eq!(
        o.ai.get(1).map(String::as_str),
        Some("Thank you for your time. Goodbye.")
    );
    assert!(o.end.is_some());
    e.close().await;
}

fn wer(r: &[String], h: &[String]) -> usize {
    let mut d = vec![vec![0usize; h.len() + 1]; r.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=r.len() {
        for j in 1..=h.len() {
            let c = usize::from(r[i - 1] != h[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + c);
        }
    }
    d[r.len()][h.len()]
}

/// Measures WER and rule accuracy of the full engine path (VAD + STT + dialog).
/// Reported, not asserted beyond a loose floor.
#[tokio::test]
async fn measure_wer_through_the_engine() {
    let _g = SERIAL.lock().await;
    let cases: &[(&str, &str)] = &[
        ("Yes, I can make it.", "Great"),
        ("Yeah, sure.", "Great"),
        ("Sure, I can make it tomorrow at ten.", "Great"),
        ("Yes.", "Great"),
        ("I can.", "Great"),
        ("No, I can't make it.", "No problem"),
        ("No.", "No problem"),
        ("I cannot make it tomorrow.", "No problem"),
        ("Sorry, no, I can't.", "No problem"),
        ("Who is this?", "Sorry"),
        ("What is this about?", "Sorry"),
        ("Can you repeat that?", "Sorry"),
    ];
    let (mut errs, mut words, mut rule_ok) = (0, 0, 0);
    for (text, expect) in cases {
        let mut e = LocalEngine::connect(config(Some(DEMO))).await.unwrap();
        let o = run_call(
            &mut e,
            vec![Turn {
                trigger: Trigger::AfterAiLine(1, 400),
                text,
            }],
            25_000,
        )
        .await;
        let heard: String = o
            .user
            .iter()
            .map(|u| u.0.clone())
            .collect::<Vec<_>>()
            .join(" ");
        let (r, h) = (normalize(text), normalize(&heard));
        let er = wer(&r, &h);
        errs += er;
        words += r.len();
        let ok = o.ai.get(1).is_some_and(|l| l.starts_with(expect));
        rule_ok += usize::from(ok);
        eprintln!(
            "  {text:?} -> {heard:?} (errors {er}/{}) reply ok: {ok}",
            r.len()
        );
        e.close().await;
    }
    let w = 100.0 * errs as f64 / words as f64;
    eprintln!("WER (slt caller via mu-law, kal16 agent): {w:.1}% over {words} words; right reply {rule_ok}/{}", cases.len());
    assert!(
        rule_ok * 10 >= cases.len() * 7,
        "reply accuracy too low: {rule_ok}/{}",
        cases.len()
    );
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Timeval {
    sec: i64,
    usec: i64,
}
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [i64; 14],
}
extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}
#[allow(unsafe_code)] // getrusage(2): the test's own CPU time, no crate needed for one call
fn cpu_ms() -> f64 {
    let mut r = Rusage::default();
    // SAFETY: RUSAGE_SELF (0) with a correctly laid out struct (Linux x86_64/aarch64).
    unsafe { getrusage(0, &mut r) };
    let ms = |t: Timeval| t.sec as f64 * 1e3 + t.usec as f64 / 1e3;
    ms(r.utime) + ms(r.stime)
}

/// CPU (user+sys of the whole process) for one 30 s simulated call with a
/// fresh (not cached) script, so synthesis and recognizer setup are included.
#[tokio::test]
async fn measure_cpu_for_a_30s_call() {
    let _g = SERIAL.lock().await;
    let prompt = DEMO
        .replace("tomorrow at 10. Can", "on Friday at 3. Can")
        .replace("silence 8s", "silence 6s")
        .replace("[/script]", "retries: 3\n[/script]");
    let wall = Instant::now();
    let before = cpu_ms();
    let mut e = LocalEngine::connect(config(Some(&prompt))).await.unwrap();
    let setup = cpu_ms() - before;
    // An off-script reply, then silence prompts; capped at 30 s.
    let o = run_call(
        &mut e,
        vec![Turn {
            trigger: Trigger::AfterAiLine(1, 500),
            text: "Who is this?",
        }],
        30_000,
    )
    .await;
    e.close().await;
    let total = cpu_ms() - before;
    let wall_ms = wall.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "CPU for a {:.1} s simulated call: {total:.0} ms user+sys ({setup:.0} ms of it setup: flite + pocketsphinx init), \
         {:.1}% of one core if run in real time; wall {wall_ms:.0} ms; {} utterances, {} ms decoding",
        o.ms as f64 / 1e3,
        100.0 * total / o.ms as f64,
        e.stats().utterances,
        e.stats().stt_decode_ms
    );
    assert!(
        o.ms >= 29_000,
        "call ended early at {} ms: {:?}",
        o.ms,
        o.ai
    );
    assert!(total < o.ms as f64, "slower than real time");
}

/// Calls start and end at once on a loaded sidecar: decoders must be created,
/// used and freed on many threads together (a shared log file in the C
/// library once corrupted the heap this way). Each thread recognises a
/// spoken answer, so decoding overlaps creation and teardown elsewhere.
#[test]
fn recognizers_start_decode_and_stop_on_many_threads_at_once() {
    use voxline_media_sidecar::engine::local::stt::{Recognizer, Vocabulary};
    let answer = synthesize("yes I can make it", Voice::Slt).unwrap();
    let sentences = ["yes i can make it", "no i cannot"].map(normalize);
    let vocab = Vocabulary::build(sentences).unwrap();
    // A thread per decoder, as each call's STT worker has, ending with it.
    for _round in 0..4 {
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let (vocab, answer) = (vocab.clone(), answer.clone());
                std::thread::spawn(move || {
                    if i % 2 == 0 {
                        // Calls starting elsewhere synthesise their lines meanwhile.
                        let _ = synthesize(&format!("line {i} of a script"), Voice::Kal16);
                    }
                    let mut rec = Recognizer::new(&vocab).expect("a decoder");
                    rec.start();
                    for f in answer.chunks(FRAME_SAMPLES) {
                        rec.process_8k(f);
                    }
                    rec.finish()
                })
            })
            .collect();
        for t in threads {
            let text = t.join().expect("a decoding thread survived");
            assert!(text.contains("can"), "recognised {text:?}");
        }
    }
}
