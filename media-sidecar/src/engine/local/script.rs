//! The local engine's dialog: a small script format carried in the agent's
//! system prompt, parsed into a keyword-matching state machine (sans-IO).
//!
//! This is keyword spotting over recognised words, not a language model: the
//! engine only understands the answers the script lists, and says only the
//! lines the script contains.
//!
//! # Format
//!
//! ```text
//! [script]
//! greeting: Hi, this is Demo Dental calling to confirm your appointment tomorrow at 10. Can you make it?
//! yes|yeah|sure|i can -> Great, see you tomorrow. Goodbye! [end]
//! no|can't|cannot -> No problem, we will call you to reschedule. Goodbye! [end]
//! * -> Sorry, I didn't catch that. Can you make it tomorrow at 10?
//! silence 8s -> Are you still there?
//! goodbye: Thank you, goodbye.
//! retries: 2
//! [/script]
//! ```
//!
//! - The block starts at a line `[script]` and ends at `[/script]` or the end
//!   of the prompt; text outside it is ignored by this engine. Blank lines and
//!   lines starting with `#` are skipped; keys are case-insensitive.
//! - `greeting:` is said as soon as the call is answered.
//! - `answers -> reply` : `answers` is `|`-separated phrases; a phrase matches
//!   when its words occur consecutively in what the callee said (lower-cased,
//!   punctuation dropped, digits spelled out: `10` matches "ten"). If several
//!   rules match, the longest phrase wins, then the earlier rule. Words must be
//!   in the recognizer's dictionary (CMUdict); others are dropped with a warning.
//! - A reply ending with `[end]` ends the call once it has been played; one
//!   without continues listening with the same rules.
//! - `* -> text`: said when nothing matched (default: "Sorry, I didn't catch
//!   that. Could you say that again?").
//! - `silence Ns -> text`: said when the callee stays silent N seconds after
//!   our last line (default: 8 s, "Are you still there?"). `Nms` also works.
//! - `retries: N` (default 2): after N no-match reprompts, the next no-match
//!   says the goodbye and ends; likewise after N silence prompts.
//! - `goodbye:` (default "Thank you for your time. Goodbye.") closes a call
//!   that ran out of retries; it always ends the call.
//! - The keypad (issue 18). Keys the callee presses (one group, e.g. `12#`)
//!   are matched like words against the rules' key answers: a phrase that
//!   is only keys (`1`, `12#`, `*`) or `press` and keys (`press 1`,
//!   `press A`) matches exactly that group; `press 1` also matches the
//!   spoken words "press one". Keys nothing matches are a no-match.
//! - `[dtmf KEYS]` in a line (the greeting, a reply): after the line's
//!   words have played, the agent presses KEYS (0-9 * # A-D, at most 32)
//!   through the `send_dtmf` tool, e.g. to navigate an IVR:
//!   `press 2|for sales -> [dtmf 2]` or `greeting: [dtmf 1234#]`. A line
//!   of keys alone says nothing; with `[end]` the call ends once they played.
//! - `[tool NAME {JSON}]` in a reply (issue 18): as the line starts, the
//!   agent calls its customer tool NAME with those arguments (a JSON object;
//!   absent: `{}`), e.g. `yes -> [tool confirm_appointment {"confirmed": true}]
//!   Great, see you then.`; the edge calls the tool's URL and the call and
//!   its answer are a `tool` turn of the transcript. The answer is not read
//!   back to the callee (a script has no words for it). A built-in tool's
//!   name runs that tool in the sidecar, e.g. `1 -> [tool transfer
//!   {"destination": "+14155550100"}] Transferring you now.`
//!
//! A prompt without a `[script]` block gets a default script: the greeting is
//! the prompt's first sentence, and whatever the callee answers is followed
//! by the goodbye (silence prompts as above).

use std::time::Duration;

// Number words, shared with the post-call analysis's rules.
use voxline_shared::analysis::{TENS, UNITS as ONES};

pub const DEFAULT_REPROMPT: &str = "Sorry, I didn't catch that. Could you say that again?";
pub const DEFAULT_SILENCE_TEXT: &str = "Are you still there?";
pub const DEFAULT_GOODBYE: &str = "Thank you for your time. Goodbye.";
pub const DEFAULT_GREETING: &str = "Hello, this is an automated call.";
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(8);
pub const DEFAULT_RETRIES: u32 = 2;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line {
    pub text: String,
    pub end: bool,
    /// `[dtmf KEYS]`: keys pressed once the text has played.
    pub keys: Option<String>,
    /// `[tool NAME {JSON}]`: a customer tool called as the line starts.
    pub tool: Option<ScriptTool>,
}

/// A customer tool a script line calls: its name and arguments (JSON object text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptTool {
    pub name: String,
    pub arguments: String,
}

/// Longest `[tool ..]` arguments, as JSON text.
const MAX_SCRIPT_TOOL_ARGUMENTS: usize = 4_096;

/// `[tool NAME {JSON}]` found in `text` at `i` (the `[`): the tool and the
/// length of the tag, or why it is no tool.
fn parse_tool_tag(text: &str, i: usize) -> Result<(ScriptTool, usize), String> {
    let rest = &text[i + "[tool".len()..];
    let body = rest.trim_start();
    let name_len = body
        .find(|c: char| c.is_whitespace() || c == ']' || c == '{')
        .unwrap_or(body.len());
    let name = &body[..name_len];
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(format!(
            "tool names are 1-64 of A-Z a-z 0-9 _ - ({name:?} is not)"
        ));
    }
    let after_name = body[name_len..].trim_start();
    let (arguments, after_args) = if after_name.starts_with('{') {
        let mut values =
            serde_json::Deserializer::from_str(after_name).into_iter::<serde_json::Value>();
        match values.next() {
            Some(Ok(v)) if v.is_object() => {
                let used = values.byte_offset();
                (v.to_string(), after_name[used..].trim_start())
            }
            _ => return Err("the arguments must be one JSON object".into()),
        }
    } else {
        ("{}".to_string(), after_name)
    };
    if arguments.len() > MAX_SCRIPT_TOOL_ARGUMENTS {
        return Err(format!(
            "the arguments are over {MAX_SCRIPT_TOOL_ARGUMENTS} bytes"
        ));
    }
    if !after_args.starts_with(']') {
        return Err("no closing ]".into());
    }
    let len = text.len() - i - (after_args.len() - 1);
    Ok((
        ScriptTool {
            name: name.to_string(),
            arguments,
        },
        len,
    ))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Each phrase as normalised words.
    pub phrases: Vec<Vec<String>>,
    /// Key groups the callee may press for this rule (`1`, `press 12#`).
    pub keys: Vec<String>,
    pub reply: Line,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub greeting: String,
    /// `[dtmf KEYS]` in the greeting.
    pub greeting_keys: Option<String>,
    pub rules: Vec<Rule>,
    /// Said on no match.
    pub fallback: Line,
    pub silence_after: Duration,
    pub silence_text: String,
    pub goodbye: String,
    pub retries: u32,
    /// Whether the prompt had a `[script]` block.
    pub explicit: bool,
    /// Lines that did not parse, and similar notes for the operator.
    pub warnings: Vec<String>,
}

fn spell_number(n: u64) -> Option<String> {
    match n {
        0..=19 => Some(ONES[n as usize].to_string()),
        20..=99 => Some(if n.is_multiple_of(10) {
            TENS[(n / 10 - 2) as usize].to_string()
        } else {
            format!(
                "{} {}",
                TENS[(n / 10 - 2) as usize],
                ONES[(n % 10) as usize]
            )
        }),
        100..=999 => {
            let rest = if n.is_multiple_of(100) {
                String::new()
            } else {
                format!(" {}", spell_number(n % 100)?)
            };
            Some(format!("{} hundred{rest}", ONES[(n / 100) as usize]))
        }
        _ => None,
    }
}

/// Words after which a speaker who pauses usually goes on: conjunctions,
/// articles, prepositions, fillers ("I'd like to ... um").
const CONTINUATION_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "because", "cause", "if", "to", "of", "for", "with",
    "at", "in", "from", "by", "about", "my", "your", "our", "their", "i", "i'm", "we", "it's",
    "um", "uh", "er", "erm", "hmm", "let's",
];

/// Number words besides [`ONES`] and [`TENS`]: a pause inside a phone
/// number or a date is a pause, not an end.
const MORE_NUMBER_WORDS: &[&str] = &["oh", "hundred", "thousand", "double", "triple"];

/// Whether `words` (normalised) sound like a finished turn: something was
/// said and it does not end on a word people pause after and go on
/// (issue 17: such a turn ends at the quick endpoint instead of the VAD's
/// full hangover; Vapi's and LiveKit's endpointing wait longer in the
/// same places).
pub fn sounds_finished(words: &[String]) -> bool {
    words.last().is_some_and(|last| {
        let last = last.as_str();
        !CONTINUATION_WORDS.contains(&last)
            && !ONES.contains(&last)
            && !TENS.contains(&last)
            && !MORE_NUMBER_WORDS.contains(&last)
    })
}

/// Lower case, `’` -> `'`, anything but letters/digits/apostrophes -> space,
/// numbers below 1000 spelled out.
pub fn normalize(s: &str) -> Vec<String> {
    let cleaned: String = s
        .chars()
        .map(|c| match c {
            '\u{2019}' | '\u{2018}' => '\'',
            c if c.is_alphanumeric() || c == '\'' => c.to_ascii_lowercase(),
            _ => ' ',
        })
        .collect();
    let mut out = Vec::new();
    for w in cleaned.split_whitespace() {
        let w = w.trim_matches('\'');
        if w.is_empty() {
            continue;
        }
        if w.chars().all(|c| c.is_ascii_digit()) {
            match w.parse::<u64>().ok().and_then(spell_number) {
                Some(sp) => out.extend(sp.split(' ').map(String::from)),
                None => out.push(w.to_string()),
            }
        } else {
            out.push(w.to_string());
        }
    }
    out
}

/// A line's text, its `[end]` and its `[dtmf KEYS]` (a bad KEYS is a
/// warning and no keys).
fn parse_line(s: &str, warnings: &mut Vec<String>) -> Line {
    let mut text = s.trim().to_string();
    let mut end = false;
    // ASCII lowercasing keeps every byte offset, and "[end]" is ASCII: `i..i + 5`
    // lies on char boundaries of `text` too.
    if let Some(i) = text.to_ascii_lowercase().find("[end]") {
        text.replace_range(i..i + 5, "");
        end = true;
    }
    let mut keys = None;
    if let Some(i) = text.to_ascii_lowercase().find("[dtmf") {
        match text[i..].find(']') {
            Some(len) => {
                let inner = text[i + 5..i + len].to_string();
                text.replace_range(i..i + len + 1, "");
                match crate::call_task::tools::check_digits(&inner) {
                    Ok(k) => keys = Some(k),
                    Err(why) => warnings.push(format!("bad [dtmf] keys in {s:?}: {why}")),
                }
            }
            None => warnings.push(format!("unclosed [dtmf in {s:?}")),
        }
    }
    let mut tool = None;
    if let Some(i) = text.to_ascii_lowercase().find("[tool") {
        match parse_tool_tag(&text, i) {
            Ok((t, len)) => {
                text.replace_range(i..i + len, "");
                tool = Some(t);
            }
            Err(why) => warnings.push(format!("bad [tool] in {s:?}: {why}")),
        }
    }
    Line {
        text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        end,
        keys,
        tool,
    }
}

/// The key group an answer phrase stands for: keys alone (`1`, `12#`,
/// `*`; digits, `*` and `#` only) or `press` and keys (`press 1`, `press A`).
fn phrase_keys(phrase: &str) -> Option<String> {
    let p = phrase.trim();
    let lower = p.to_ascii_lowercase();
    let (rest, letters_ok) = match lower.strip_prefix("press ") {
        Some(_) => (&p[6..], true),
        None => (p, false),
    };
    let keys: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
    let only_keys = !keys.is_empty()
        && keys
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#' || letters_ok);
    only_keys
        .then(|| crate::call_task::tools::check_digits(&keys).ok())
        .flatten()
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().map(Duration::from_millis);
    }
    let secs = s.strip_suffix('s').unwrap_or(&s).trim();
    secs.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && *v < 3600.0)
        .map(Duration::from_secs_f64)
}

/// The first sentence of free text (for the default greeting).
fn first_sentence(text: &str) -> Option<String> {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() {
        return None;
    }
    let mut end = t.len();
    let b = t.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if matches!(c, b'.' | b'!' | b'?') && (i + 1 == b.len() || b[i + 1] == b' ') {
            end = i + 1;
            break;
        }
    }
    // `end` follows an ASCII byte (or is the length): a char boundary.
    let s = &t[..end];
    // Keep TTS turns short: cut at ~200 characters on a word boundary. Counted
    // in chars, cut at a char boundary: a byte offset can split a UTF-8 char.
    match s.char_indices().nth(200) {
        Some((limit, _)) => {
            let cut = s[..limit].rfind(' ').unwrap_or(limit);
            Some(format!("{}.", &s[..cut]))
        }
        None => Some(s.to_string()),
    }
}

impl Script {
    /// Parses the `[script]` block of a system prompt, or builds the default script.
    pub fn from_prompt(prompt: Option<&str>) -> Script {
        let prompt = prompt.unwrap_or("");
        let lines: Vec<&str> = prompt.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.trim().eq_ignore_ascii_case("[script]"));
        let Some(start) = start else {
            return Script::default_for(prompt);
        };
        let mut s = Script {
            greeting: String::new(),
            greeting_keys: None,
            rules: Vec::new(),
            fallback: Line {
                text: DEFAULT_REPROMPT.into(),
                ..Line::default()
            },
            silence_after: DEFAULT_SILENCE,
            silence_text: DEFAULT_SILENCE_TEXT.into(),
            goodbye: DEFAULT_GOODBYE.into(),
            retries: DEFAULT_RETRIES,
            explicit: true,
            warnings: Vec::new(),
        };
        for raw in &lines[start + 1..] {
            let line = raw.trim();
            if line.eq_ignore_ascii_case("[/script]") {
                break;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((lhs, rhs)) = line.split_once("->") {
                let lhs = lhs.trim();
                let reply = parse_line(rhs, &mut s.warnings);
                if reply.text.is_empty() && reply.keys.is_none() && reply.tool.is_none() {
                    s.warnings.push(format!("empty reply: {line:?}"));
                    continue;
                }
                let lower = lhs.to_ascii_lowercase();
                if lhs == "*" {
                    s.fallback = reply;
                } else if let Some(rest) = lower.strip_prefix("silence") {
                    match if rest.trim().is_empty() {
                        Some(DEFAULT_SILENCE)
                    } else {
                        parse_duration(rest)
                    } {
                        Some(d) => {
                            s.silence_after = d;
                            s.silence_text = reply.text;
                        }
                        None => s.warnings.push(format!("bad silence duration: {line:?}")),
                    }
                } else {
                    // Keys with `*`, `#` or letters are no words to hear.
                    let spoken = |p: &&str| {
                        phrase_keys(p).is_none_or(|k| k.chars().all(|c| c.is_ascii_digit()))
                    };
                    let phrases: Vec<Vec<String>> = lhs
                        .split('|')
                        .filter(spoken)
                        .map(normalize)
                        .filter(|p| !p.is_empty())
                        .collect();
                    let keys: Vec<String> = lhs.split('|').filter_map(phrase_keys).collect();
                    if phrases.is_empty() && keys.is_empty() {
                        s.warnings.push(format!("rule without answers: {line:?}"));
                    } else {
                        s.rules.push(Rule {
                            phrases,
                            keys,
                            reply,
                        });
                    }
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim();
                match k.trim().to_ascii_lowercase().as_str() {
                    "greeting" => {
                        let l = parse_line(v, &mut s.warnings);
                        (s.greeting, s.greeting_keys) = (l.text, l.keys);
                    }
                    "goodbye" => s.goodbye = parse_line(v, &mut s.warnings).text,
                    "retries" => match v.parse() {
                        Ok(n) if n <= 10 => s.retries = n,
                        _ => s.warnings.push(format!("bad retries: {line:?}")),
                    },
                    _ => s.warnings.push(format!("unknown key: {line:?}")),
                }
                continue;
            }
            s.warnings.push(format!("unparsed line: {line:?}"));
        }
        if s.greeting.is_empty() && s.greeting_keys.is_none() {
            let outside: String = lines[..start].join(" ");
            s.greeting = first_sentence(&outside).unwrap_or_else(|| DEFAULT_GREETING.into());
            s.warnings
                .push("no greeting: using the prompt's first sentence".into());
        }
        s
    }

    fn default_for(prompt: &str) -> Script {
        Script {
            greeting: first_sentence(prompt).unwrap_or_else(|| DEFAULT_GREETING.into()),
            greeting_keys: None,
            rules: Vec::new(),
            fallback: Line {
                text: DEFAULT_GOODBYE.into(),
                end: true,
                ..Line::default()
            },
            silence_after: DEFAULT_SILENCE,
            silence_text: DEFAULT_SILENCE_TEXT.into(),
            goodbye: DEFAULT_GOODBYE.into(),
            retries: DEFAULT_RETRIES,
            explicit: false,
            warnings: Vec::new(),
        }
    }

    /// Every word the script's answers use (for the recognizer's vocabulary).
    pub fn answer_words(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .rules
            .iter()
            .flat_map(|r| r.phrases.iter().flatten().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Sentences the callee may say, for the recognizer's language model:
    /// every answer phrase, and every sentence of our own lines (callees echo
    /// them: "yes, tomorrow at ten works").
    pub fn corpus(&self) -> Vec<Vec<String>> {
        let mut v: Vec<Vec<String>> = self
            .rules
            .iter()
            .flat_map(|r| r.phrases.iter().cloned())
            .collect();
        for line in self.all_lines() {
            for sentence in line.split(['.', '?', '!', ';']) {
                let w = normalize(sentence);
                if !w.is_empty() && !v.contains(&w) {
                    v.push(w);
                }
            }
        }
        v
    }

    /// Every line the engine may say (for pre-synthesis).
    pub fn all_lines(&self) -> Vec<String> {
        let mut v = vec![self.greeting.clone()];
        v.extend(self.rules.iter().map(|r| r.reply.text.clone()));
        v.push(self.fallback.text.clone());
        v.push(self.silence_text.clone());
        v.push(self.goodbye.clone());
        // A line of keys alone says nothing.
        v.retain(|l| !l.is_empty());
        v.dedup();
        v
    }

    /// The rule a group of keys the callee pressed selects: the first whose
    /// key answers name exactly that group.
    pub fn match_keys(&self, keys: &str) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.keys.iter().any(|k| k.eq_ignore_ascii_case(keys)))
    }

    /// The rule `words` select: longest matching phrase, then earliest rule.
    pub fn match_rule(&self, words: &[String]) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None; // (phrase len, rule index)
        for (i, r) in self.rules.iter().enumerate() {
            for p in &r.phrases {
                let found =
                    p.len() <= words.len() && words.windows(p.len()).any(|w| w == p.as_slice());
                if found && best.is_none_or(|(len, _)| p.len() > len) {
                    best = Some((p.len(), i));
                }
            }
        }
        best.map(|(_, i)| i)
    }
}

/// Why the dialog said a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Greeting,
    Rule(usize),
    NoMatch,
    Silence,
    Goodbye,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Say {
    /// Empty for a line of keys alone.
    pub text: String,
    pub end: bool,
    pub cause: Cause,
    /// Keys to press once the text has played (`[dtmf KEYS]`).
    pub keys: Option<String>,
    /// A customer tool to call as the line starts (`[tool ..]`).
    pub tool: Option<ScriptTool>,
}

/// The dialog state machine. Timing (when silence has lasted long enough,
/// when a line has been played) is the engine's job; this only decides what
/// to say next.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub script: Script,
    no_match: u32,
    silences: u32,
    ended: bool,
}

impl Dialog {
    pub fn new(script: Script) -> Dialog {
        Dialog {
            script,
            no_match: 0,
            silences: 0,
            ended: false,
        }
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    fn say(&mut self, text: String, end: bool, cause: Cause) -> Option<Say> {
        self.say_line(
            Line {
                text,
                end,
                ..Line::default()
            },
            cause,
        )
    }

    fn say_line(&mut self, line: Line, cause: Cause) -> Option<Say> {
        if self.ended {
            return None;
        }
        self.ended = line.end;
        Some(Say {
            text: line.text,
            end: line.end,
            cause,
            keys: line.keys,
            tool: line.tool,
        })
    }

    fn goodbye(&mut self) -> Option<Say> {
        let g = self.script.goodbye.clone();
        self.say(g, true, Cause::Goodbye)
    }

    /// The call was answered.
    pub fn start(&mut self) -> Option<Say> {
        let g = Line {
            text: self.script.greeting.clone(),
            keys: self.script.greeting_keys.clone(),
            ..Line::default()
        };
        self.say_line(g, Cause::Greeting)
    }

    /// The callee pressed `keys` (one group): the rule naming them, else a
    /// no-match as for words.
    pub fn on_keys(&mut self, keys: &str) -> Option<Say> {
        if keys.is_empty() || self.ended {
            return None;
        }
        self.silences = 0;
        match self.script.match_keys(keys) {
            Some(i) => {
                self.no_match = 0;
                let r = self.script.rules[i].reply.clone();
                self.say_line(r, Cause::Rule(i))
            }
            None => self.no_match(),
        }
    }

    /// The callee said `text` (recognised). Empty text (noise) is ignored.
    pub fn on_user(&mut self, text: &str) -> Option<Say> {
        let words = normalize(text);
        if words.is_empty() || self.ended {
            return None;
        }
        self.silences = 0;
        match self.script.match_rule(&words) {
            Some(i) => {
                self.no_match = 0;
                let r = self.script.rules[i].reply.clone();
                self.say_line(r, Cause::Rule(i))
            }
            None => self.no_match(),
        }
    }

    fn no_match(&mut self) -> Option<Say> {
        match () {
            () if self.script.fallback.end => {
                let f = self.script.fallback.clone();
                self.say_line(f, Cause::NoMatch)
            }
            () if self.no_match >= self.script.retries => self.goodbye(),
            () => {
                self.no_match += 1;
                let f = self.script.fallback.clone();
                self.say_line(f, Cause::NoMatch)
            }
        }
    }

    /// The callee has been silent for `script.silence_after` since our last line.
    pub fn on_silence(&mut self) -> Option<Say> {
        if self.silences >= self.script.retries {
            return self.goodbye();
        }
        self.silences += 1;
        let t = self.script.silence_text.clone();
        self.say(t, false, Cause::Silence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_may_call_a_customer_tool() {
        let s = Script::from_prompt(Some(
            "[script]\ngreeting: Hi.\n\
             yes -> [tool confirm_appointment {\"confirmed\": true, \"slots\": [1, 2]}] Great. [end]\n\
             no -> [TOOL log_refusal] Alright.\n\
             maybe -> [tool bad name {}] Hmm.\n\
             later -> Fine. [tool late {\"a\": 1}\n\
             [/script]",
        ));
        assert_eq!(
            s.rules[0].reply,
            Line {
                text: "Great.".into(),
                end: true,
                keys: None,
                tool: Some(ScriptTool {
                    name: "confirm_appointment".into(),
                    arguments: r#"{"confirmed":true,"slots":[1,2]}"#.into()
                }),
            }
        );
        assert_eq!(
            (
                s.rules[1].reply.text.as_str(),
                s.rules[1].reply.tool.as_ref().map(|t| t.arguments.as_str())
            ),
            ("Alright.", Some("{}"))
        );
        assert_eq!(s.rules[2].reply.tool, None);
        assert_eq!(s.rules[3].reply.tool, None);
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        let mut d = Dialog::new(s);
        d.start();
        let said = d.on_user("yes").unwrap();
        assert_eq!(
            said.tool.map(|t| t.name),
            Some("confirm_appointment".into())
        );
    }

    #[test]
    fn a_turn_sounds_finished_unless_it_ends_on_a_word_people_go_on_after() {
        for said in [
            "Yes, I can make it.",
            "Maybe.",
            "Yes I can",
            "I think so",
            "It's Tuesday",
        ] {
            assert!(sounds_finished(&normalize(said)), "{said:?}");
        }
        for said in [
            "",
            "I would like to",
            "Yes and",
            "My number is 5 5 5",
            "um",
            "Well, the",
        ] {
            assert!(!sounds_finished(&normalize(said)), "{said:?}");
        }
    }

    pub const DEMO: &str = "You are a friendly receptionist.\n[script]\n\
        greeting: Hi, this is Demo Dental calling to confirm your appointment tomorrow at 10. Can you make it?\n\
        yes|yeah|sure|i can -> Great, see you tomorrow. Goodbye!  [end]\n\
        no|can't|cannot -> No problem, we will call you to reschedule. Goodbye! [end]\n\
        * -> Sorry, I didn't catch that. Can you make it tomorrow at 10?\n\
        silence 8s -> Are you still there? \n\
        goodbye: Thank you, goodbye.\n[/script]\nIgnored trailing text.";

    /// The default greeting used to be cut at byte 200, which panicked
    /// inside a multi-byte character of a long non-ASCII prompt.
    #[test]
    fn long_non_ascii_prompt_is_cut_on_a_char_boundary() {
        // Byte 200 falls inside an 'é' (1 + 2k bytes before it).
        let one_word = format!("a{}", "é".repeat(300));
        let g = Script::from_prompt(Some(&one_word)).greeting;
        assert_eq!(g.chars().count(), 201, "200 chars and a period");
        assert!(g.ends_with("é."));
        let words = "日本語のテキスト ".repeat(40);
        let g = Script::from_prompt(Some(&words)).greeting;
        assert!(g.chars().count() <= 201 && g.ends_with("テキスト."), "{g}");
        // A short sentence is left as it is.
        assert_eq!(Script::from_prompt(Some("Ça va? Oui.")).greeting, "Ça va?");
    }

    #[test]
    fn parses_the_demo_script() {
        let s = Script::from_prompt(Some(DEMO));
        assert!(s.explicit);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert!(s.greeting.starts_with("Hi, this is Demo Dental"));
        assert_eq!(s.rules.len(), 2);
        assert_eq!(s.rules[0].phrases[3], vec!["i", "can"]);
        assert_eq!(
            s.rules[0].reply,
            Line {
                text: "Great, see you tomorrow. Goodbye!".into(),
                end: true,
                ..Line::default()
            }
        );
        assert_eq!(s.rules[1].phrases[1], vec!["can't"]);
        assert!(!s.fallback.end);
        assert_eq!(s.silence_after, Duration::from_secs(8));
        assert_eq!(s.silence_text, "Are you still there?");
        assert_eq!(s.goodbye, "Thank you, goodbye.");
        assert_eq!(s.retries, 2);
        assert_eq!(
            s.answer_words(),
            vec!["can", "can't", "cannot", "i", "no", "sure", "yeah", "yes"]
        );
    }

    #[test]
    fn matching_is_by_keywords_longest_first() {
        let s = Script::from_prompt(Some(DEMO));
        let m = |t: &str| s.match_rule(&normalize(t));
        assert_eq!(m("Yes, I can make it."), Some(0));
        assert_eq!(m("yeah sure"), Some(0));
        assert_eq!(m("No, sorry."), Some(1));
        assert_eq!(m("I can't"), Some(1)); // "can't" is not "can"
        assert_eq!(m("I CANNOT do that"), Some(1));
        assert_eq!(m("what is this about"), None);
        assert_eq!(m(""), None);
        // Longest phrase wins: "not sure" beats "sure" when a rule lists it.
        let s2 = Script::from_prompt(Some(
            "[script]\ngreeting: Hi\nsure -> A\nnot sure|maybe -> B\n",
        ));
        assert_eq!(s2.match_rule(&normalize("I'm not sure")), Some(1));
        assert_eq!(s2.match_rule(&normalize("sure")), Some(0));
    }

    #[test]
    fn numbers_and_punctuation_normalise() {
        assert_eq!(normalize("At 10, OK?"), vec!["at", "ten", "ok"]);
        assert_eq!(normalize("I can\u{2019}t"), vec!["i", "can't"]);
        assert_eq!(
            normalize("21 145"),
            vec!["twenty", "one", "one", "hundred", "forty", "five"]
        );
    }

    #[test]
    fn dialog_flow_reprompts_are_bounded() {
        let mut d = Dialog::new(Script::from_prompt(Some(DEMO)));
        assert_eq!(d.start().unwrap().cause, Cause::Greeting);
        let r = d.on_user("what").unwrap();
        assert_eq!((r.cause, r.end), (Cause::NoMatch, false));
        assert_eq!(d.on_user("hmm what").unwrap().cause, Cause::NoMatch);
        let g = d.on_user("who is this").unwrap();
        assert_eq!(
            (g.cause, g.end, g.text.as_str()),
            (Cause::Goodbye, true, "Thank you, goodbye.")
        );
        assert!(d.ended());
        assert_eq!(d.on_user("yes"), None);
    }

    #[test]
    fn dialog_flow_match_ends() {
        let mut d = Dialog::new(Script::from_prompt(Some(DEMO)));
        d.start();
        assert_eq!(d.on_user(""), None, "noise is ignored");
        let r = d.on_user("yeah i can").unwrap();
        assert_eq!((r.cause, r.end), (Cause::Rule(0), true));
        assert!(d.ended());
    }

    #[test]
    fn silence_prompts_then_goodbye() {
        let mut d = Dialog::new(Script::from_prompt(Some(DEMO)));
        d.start();
        assert_eq!(d.on_silence().unwrap().cause, Cause::Silence);
        assert_eq!(d.on_silence().unwrap().cause, Cause::Silence);
        let g = d.on_silence().unwrap();
        assert!(g.end && g.cause == Cause::Goodbye);
        // A reply in between resets the silence count.
        let mut d = Dialog::new(Script::from_prompt(Some(DEMO)));
        d.start();
        d.on_silence();
        d.on_silence();
        d.on_user("pardon");
        assert_eq!(d.on_silence().unwrap().cause, Cause::Silence);
    }

    #[test]
    fn prompt_without_script_gets_default() {
        let s = Script::from_prompt(Some(
            "You are calling from Acme Corp about your order. Be polite and brief.",
        ));
        assert!(!s.explicit);
        assert_eq!(
            s.greeting,
            "You are calling from Acme Corp about your order."
        );
        let mut d = Dialog::new(s);
        d.start();
        let r = d.on_user("okay thanks").unwrap();
        assert!(r.end && r.text == DEFAULT_GOODBYE);
        let s = Script::from_prompt(None);
        assert_eq!(s.greeting, DEFAULT_GREETING);
    }

    #[test]
    fn options_and_warnings() {
        let s = Script::from_prompt(Some(
            "Intro sentence here. More.\n[script]\n# comment\nretries: 1\nsilence 2500ms -> Hello?\nbogus line\nfoo: bar\nyes -> Ok [END]\n",
        ));
        assert_eq!(s.greeting, "Intro sentence here.");
        assert_eq!(s.retries, 1);
        assert_eq!(s.silence_after, Duration::from_millis(2500));
        assert_eq!(s.silence_text, "Hello?");
        assert!(s.rules[0].reply.end && s.rules[0].reply.text == "Ok");
        assert_eq!(s.warnings.len(), 3, "{:?}", s.warnings); // bogus, foo, no greeting
    }

    #[test]
    fn keys_match_key_answers_and_lines_press_keys() {
        let s = Script::from_prompt(Some(
            "[script]\ngreeting: Main menu. [dtmf 1] \n\
             press 1|billing -> Billing. [dtmf 12#]\n\
             2|press *|sales -> [dtmf 2] [end]\n\
             press a|bad -> Letters.\n\
             bye -> [dtmf 9x]\n",
        ));
        assert_eq!(
            (s.greeting.as_str(), s.greeting_keys.as_deref()),
            ("Main menu.", Some("1"))
        );
        assert_eq!(s.rules[0].keys, ["1"]);
        assert_eq!(s.rules[0].phrases, [vec!["press", "one"], vec!["billing"]]);
        assert_eq!(s.rules[0].reply.keys.as_deref(), Some("12#"));
        assert_eq!(s.rules[1].keys, ["2", "*"]);
        assert_eq!(
            s.rules[1].reply,
            Line {
                text: String::new(),
                end: true,
                keys: Some("2".into()),
                tool: None,
            }
        );
        // `press a` is the key A; the word "bad" is not keys.
        assert_eq!(s.rules[2].keys, ["A"]);
        // Bad keys: a warning, and a rule with nothing to say is dropped.
        assert_eq!(s.rules.len(), 3, "{:?}", s.rules);
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(!s.all_lines().contains(&String::new()));
        assert_eq!(s.match_keys("1"), Some(0));
        assert_eq!(s.match_keys("*"), Some(1));
        assert_eq!(s.match_keys("a"), Some(2));
        assert_eq!(s.match_keys("12"), None, "a group matches whole");
        // Spoken, "press one" still matches.
        assert_eq!(s.match_rule(&normalize("press one please")), Some(0));

        let mut d = Dialog::new(s);
        let g = d.start().unwrap();
        assert_eq!(
            (g.text.as_str(), g.keys.as_deref()),
            ("Main menu.", Some("1"))
        );
        assert_eq!(d.on_keys("7").unwrap().cause, Cause::NoMatch);
        let r = d.on_keys("1").unwrap();
        assert_eq!((r.cause, r.keys.as_deref()), (Cause::Rule(0), Some("12#")));
        let r = d.on_keys("2").unwrap();
        assert_eq!(
            (r.end, r.text.as_str(), r.keys.as_deref()),
            (true, "", Some("2"))
        );
        assert!(d.ended());
    }
}
