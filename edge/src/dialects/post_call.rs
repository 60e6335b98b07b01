//! What every dialect's post-call webhook reads: a call that has ended, its
//! turns, and the two formats they share (RFC 3339 seconds, hex HMAC-SHA256).

/// Who spoke a transcript turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Agent,
    Callee,
}

/// One transcript turn, as the post-call webhooks read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn<'a> {
    pub speaker: Speaker,
    pub text: &'a str,
    /// From the answer, in ms.
    pub start_ms: u64,
}

/// A call that has ended, as every dialect's post-call webhook reads it
/// (filled from the call record and its transcript at delivery time).
#[derive(Debug, Clone)]
pub struct EndedCall<'a> {
    pub call_id: &'a str,
    pub agent_id: &'a str,
    pub agent_name: &'a str,
    /// The number dialled (E.164).
    pub phone: &'a str,
    /// Our caller ID, when the trunk's is known.
    pub from_phone: Option<&'a str>,
    pub status: voxline_shared::CallStatus,
    /// Why it ended, when known (CodeB's `endedReason`).
    pub ended_reason: Option<voxline_shared::EndedReason>,
    /// Attempts started (1 once first dialled) and redials still allowed
    /// (CodeB's `attempt`, `retriesLeft`).
    pub attempt: u32,
    pub retries_left: u32,
    /// The callee's name (the request's `name`).
    pub name: Option<&'a str>,
    /// The caller-ID label the callee was shown (the request's
    /// `caller_name`, CodeB's `displayName`).
    pub caller_name: Option<&'a str>,
    pub email: Option<&'a str>,
    /// The request's `metadata` JSON text, as given.
    pub metadata: Option<&'a serde_json::value::RawValue>,
    pub language: &'a str,
    /// Unix ms: handed to a sidecar, answered, ended.
    pub dispatched_ms: Option<u64>,
    pub answered_ms: Option<u64>,
    pub ended_ms: u64,
    pub summary: Option<&'a str>,
    /// What the engine concluded (`outcome`), e.g. `account_setup`.
    pub outcome: Option<&'a str>,
    /// `positive` | `neutral` | `negative`, from the post-call analysis.
    pub sentiment: Option<&'a str>,
    pub turns: Vec<Turn<'a>>,
    /// An absolute URL that serves the recording, when there is one.
    pub recording_url: Option<String>,
}

impl EndedCall<'_> {
    /// When the call started: answered, else handed to a sidecar, else its end.
    pub fn started_ms(&self) -> u64 {
        self.answered_ms
            .or(self.dispatched_ms)
            .unwrap_or(self.ended_ms)
    }

    /// Seconds talked (0 when never answered).
    pub fn duration_seconds(&self) -> u64 {
        match self.answered_ms {
            Some(a) => self.ended_ms.saturating_sub(a) / 1000,
            None => 0,
        }
    }
}

/// How the callee came across, from the post-call analysis ([`sentiment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sentiment {
    Positive,
    Neutral,
    Negative,
}

impl Sentiment {
    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Positive => "positive",
            Sentiment::Neutral => "neutral",
            Sentiment::Negative => "negative",
        }
    }
}

/// Words that lean positive, as a callee says them or an engine labels an outcome.
const POSITIVE_WORDS: &[&str] = &[
    "absolutely",
    "accept",
    "accepted",
    "agree",
    "agreed",
    "appreciate",
    "awesome",
    "book",
    "booked",
    "certainly",
    "confirm",
    "confirmed",
    "definitely",
    "excellent",
    "fantastic",
    "glad",
    "good",
    "great",
    "happy",
    "helpful",
    "interested",
    "like",
    "love",
    "ok",
    "okay",
    "perfect",
    "please",
    "scheduled",
    "success",
    "successful",
    "sure",
    "thank",
    "thanks",
    "wonderful",
    "yeah",
    "yep",
    "yes",
];
/// Words that lean negative.
const NEGATIVE_WORDS: &[&str] = &[
    "angry",
    "annoyed",
    "annoying",
    "awful",
    "bad",
    "cancel",
    "cancelled",
    "complain",
    "complaint",
    "decline",
    "declined",
    "disappointed",
    "frustrated",
    "hate",
    "nope",
    "problem",
    "refuse",
    "refused",
    "remove",
    "rude",
    "scam",
    "spam",
    "stop",
    "terrible",
    "unsubscribe",
    "useless",
    "waste",
    "worst",
    "wrong",
];
/// Words that turn the next polar word (within two words) around:
/// "not interested", "no thanks", "no problem".
const NEGATORS: &[&str] = &[
    "no", "not", "never", "dont", "don't", "didnt", "didn't", "doesnt", "doesn't", "isnt", "isn't",
    "wasnt", "wasn't", "cant", "can't", "cannot", "wont", "won't",
];
/// Engine bookkeeping outcomes that say how the script went, not how the callee felt.
const NEUTRAL_OUTCOMES: &[&str] = &["no_match", "no_answer"];
/// How far (in words) a negator reaches.
const NEGATION_REACH: usize = 2;
/// Words of text looked at (bounds the work on a long transcript).
const MAX_WORDS: usize = 2_000;

/// The lexicon score of `text`: +1 per positive word, -1 per negative word,
/// turned around after a negator; a bare "no" (nothing polar after it) counts -1.
fn lexicon_score(text: &str) -> i64 {
    // A typographic apostrophe (don’t) reads as the plain one.
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '\u{2019}'))
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(|w| w.to_lowercase().replace('\u{2019}', "'"))
        .collect();
    let polarity = |w: &str| {
        if POSITIVE_WORDS.contains(&w) {
            1
        } else if NEGATIVE_WORDS.contains(&w) {
            -1
        } else {
            0
        }
    };
    let mut score = 0i64;
    for (i, word) in words.iter().enumerate() {
        let p = polarity(word);
        if p != 0 {
            let negated = words[i.saturating_sub(NEGATION_REACH)..i]
                .iter()
                .any(|w| NEGATORS.contains(&w.as_str()));
            score += if negated { -p } else { p };
        } else if word == "no" {
            // "No." on its own is a refusal; "no thanks" is scored at "thanks".
            let polar_follows = words
                .iter()
                .skip(i + 1)
                .take(NEGATION_REACH)
                .any(|w| polarity(w) != 0);
            if !polar_follows {
                score -= 1;
            }
        }
    }
    score
}

/// The post-call analysis the local engine lacks a model for: a small,
/// deterministic lexicon reading (English words) of what the call produced.
///
/// - No callee words at all (unanswered, or silent): `neutral`.
/// - Else the engine's `outcome` decides when its words lean one way
///   ("interested", "booked", "not interested", "declined"; the bookkeeping
///   outcomes `no_match` and `no_answer` are ignored).
/// - Else the sum over the callee's words decides: positive words +1, negative
///   words -1, turned around by a negator up to two words before ("not
///   interested" -1, "no problem" +1), and a bare "no" -1; zero is `neutral`.
pub fn sentiment<'a>(
    outcome: Option<&str>,
    callee_words: impl IntoIterator<Item = &'a str>,
) -> Sentiment {
    let callee: Vec<&str> = callee_words
        .into_iter()
        .filter(|t| !t.trim().is_empty())
        .collect();
    if callee.is_empty() {
        return Sentiment::Neutral;
    }
    let of = |score: i64| match score.signum() {
        1 => Sentiment::Positive,
        -1 => Sentiment::Negative,
        _ => Sentiment::Neutral,
    };
    if let Some(outcome) = outcome.filter(|o| !NEUTRAL_OUTCOMES.contains(&o.trim())) {
        // Labels such as `not_interested`: underscores and dashes separate words.
        let score = lexicon_score(&outcome.replace(['_', '-'], " "));
        if score != 0 {
            return of(score);
        }
    }
    of(callee.iter().map(|t| lexicon_score(t)).sum())
}

/// Hex HMAC-SHA256 of `body` with `key`: how BuildVoiceAI and Calldock sign.
pub fn hex_hmac_sha256(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
pub(crate) mod test_call {
    use super::*;
    use voxline_shared::CallStatus;

    /// The call of the seeds' examples: answered 2024-01-15T10:30:00Z, 141 s.
    pub fn ended<'a>(metadata: Option<&'a serde_json::value::RawValue>) -> EndedCall<'a> {
        EndedCall {
            call_id: "call_01",
            agent_id: "agt_01",
            agent_name: "Sales Qualifier",
            phone: "+15551234567",
            from_phone: Some("+13239776447"),
            status: CallStatus::Completed,
            ended_reason: Some(voxline_shared::EndedReason::CalleeHangup),
            attempt: 1,
            retries_left: 0,
            name: Some("Jane Smith"),
            caller_name: None,
            email: Some("jane@example.com"),
            metadata,
            language: "en",
            dispatched_ms: Some(1_705_314_595_000),
            answered_ms: Some(1_705_314_600_000),
            ended_ms: 1_705_314_741_400,
            summary: Some("Caller expressed interest."),
            outcome: Some("account_setup"),
            sentiment: Some("positive"),
            turns: vec![
                Turn {
                    speaker: Speaker::Agent,
                    text: "Hello, this is Sarah.",
                    start_ms: 1_200,
                },
                Turn {
                    speaker: Speaker::Callee,
                    text: "Hi, I was wondering about your pricing.",
                    start_ms: 5_000,
                },
            ],
            recording_url: Some("https://edge.example/v1/calls/call_01/recording".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::rfc3339_seconds;

    #[test]
    fn times_and_durations() {
        let call = test_call::ended(None);
        assert_eq!(rfc3339_seconds(call.started_ms()), "2024-01-15T10:30:00Z");
        assert_eq!(call.duration_seconds(), 141);
        let never = EndedCall {
            answered_ms: None,
            ..call
        };
        assert_eq!(never.duration_seconds(), 0);
        assert_eq!(rfc3339_seconds(never.started_ms()), "2024-01-15T10:29:55Z");
        assert_eq!(rfc3339_seconds(u64::MAX), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn sentiment_reads_the_outcome_then_the_callees_words() {
        use Sentiment::*;
        let s = |outcome: Option<&str>, words: &[&str]| sentiment(outcome, words.iter().copied());
        // Nothing said: neutral, whatever the outcome.
        assert_eq!(s(Some("interested"), &[]), Neutral);
        assert_eq!(s(None, &["  "]), Neutral);
        // The outcome decides when it leans one way (labels split on _ and -).
        assert_eq!(s(Some("booked"), &["hmm"]), Positive);
        assert_eq!(s(Some("not_interested"), &["yes, great"]), Negative);
        assert_eq!(s(Some("account-setup"), &["great, thanks"]), Positive);
        // Bookkeeping outcomes say nothing; the words decide.
        assert_eq!(s(Some("no_match"), &["I'm not interested."]), Negative);
        assert_eq!(s(Some("no_answer"), &["Yes please"]), Positive);
        // Negators turn the next polar word around, two words far.
        assert_eq!(s(None, &["No thanks."]), Negative);
        assert_eq!(s(None, &["No problem at all"]), Positive);
        assert_eq!(s(None, &["I don\u{2019}t like it"]), Negative);
        assert_eq!(s(None, &["No.", "Stop calling me"]), Negative);
        assert_eq!(s(None, &["no, not interested"]), Negative);
        // Balanced, or no lexicon words: neutral.
        assert_eq!(s(None, &["yes", "that is wrong"]), Neutral);
        assert_eq!(s(None, &["Tuesday at four"]), Neutral);
        assert_eq!(
            s(None, &["Hi, I was wondering about your pricing."]),
            Neutral
        );
        // Case and punctuation do not matter; the result is the same every time.
        assert_eq!(s(None, &["YES! Perfect."]), Positive);
        assert_eq!(Positive.as_str(), "positive");
        let long = "yes ".repeat(10 * MAX_WORDS);
        assert_eq!(s(None, &[long.as_str()]), Positive);
    }
}
