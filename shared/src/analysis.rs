//! Post-call analysis (issue 18): what a call came to, read after it ended.
//!
//! An agent asks for it with an [`AnalysisPlan`] (`analysis` on the agent):
//! which engine outcomes count as success, what success means in words (for
//! a cloud engine), and a JSON Schema of the data to pull out of the call.
//! The result is a [`CallAnalysis`] on the call, in `call.completed` and in
//! `transcript.saved`.
//!
//! [`analyse_locally`] is the deterministic reading every call gets when no
//! engine gave one (the local engine has no language model): the engine's
//! summary, a lexicon [`sentiment`], success from the engine's outcome, and
//! the schema's fields by keyword rules ([`extract`]). A cloud engine's own
//! analysis, when it gives one, is used instead (`source: engine`).
//!
//! Pure and bounded: both the edge (wasm32) and the sidecar compile it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// At most this many fields in an agent's `data_schema`.
pub const MAX_DATA_FIELDS: usize = 20;
/// At most this many `success_outcomes`, and values per `enum`.
pub const MAX_LIST_ITEMS: usize = 20;
/// Longest field name, outcome or enum value.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest `description` of a field, and `success_criteria`.
pub const MAX_TEXT_CHARS: usize = 1_000;
/// Longest summary kept (a cloud engine's is cut there, on a char boundary).
pub const MAX_SUMMARY_CHARS: usize = 2_000;
/// Longest extracted string value.
pub const MAX_VALUE_CHARS: usize = 500;

/// What an agent asks of the analysis (`analysis` on the agent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisPlan {
    /// Engine outcomes (the local script's `outcome`, e.g. `yes`) that mean
    /// the call reached its goal. Empty: success is judged by
    /// `success_criteria` (cloud engines) or left unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_outcomes: Vec<String>,
    /// What success means, in words, for an engine that reads the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_criteria: Option<String>,
    /// The structured data to extract: a JSON Schema `object` whose
    /// `properties` are `string` (optionally `enum`), `number`, `integer` or
    /// `boolean`, each with an optional `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_schema: Option<Value>,
}

/// Who produced an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisSource {
    /// [`analyse_locally`]: keyword rules and a lexicon.
    Local,
    /// The call's engine (a cloud engine's language model).
    Engine,
}

/// The analysis of one ended call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallAnalysis {
    pub summary: Option<String>,
    pub sentiment: Sentiment,
    /// Whether the call reached its goal; `None` when the plan gives no way to tell.
    pub success: Option<bool>,
    /// The `data_schema`'s fields (a field not found is `null`); `None`
    /// without a schema.
    pub data: Option<Map<String, Value>>,
    pub source: AnalysisSource,
}

/// One transcript turn as the analysis reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub callee: bool,
    pub text: &'a str,
}

/// The field kinds a `data_schema` may declare.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    Text,
    Choice(Vec<String>),
    Number,
    Integer,
    Boolean,
}

/// One field of a `data_schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
}

/// The fields of a `data_schema`, or what is wrong with it (a message for
/// a 422 naming the part at fault).
pub fn schema_fields(schema: &Value) -> Result<Vec<Field>, String> {
    let obj = schema
        .as_object()
        .ok_or("data_schema must be a JSON Schema object")?;
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err("data_schema.type must be \"object\"".into());
    }
    let props = obj
        .get("properties")
        .and_then(Value::as_object)
        .ok_or("data_schema.properties must be an object")?;
    if props.is_empty() || props.len() > MAX_DATA_FIELDS {
        return Err(format!(
            "data_schema.properties must have 1 to {MAX_DATA_FIELDS} fields"
        ));
    }
    let mut out = Vec::with_capacity(props.len());
    for (name, spec) in props {
        let valid_name = !name.is_empty()
            && name.chars().count() <= MAX_NAME_CHARS
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "data_schema field names are 1-{MAX_NAME_CHARS} of A-Z a-z 0-9 _ ({name:?} is not)"
            ));
        }
        let at = |what: &str| format!("data_schema.properties.{name}: {what}");
        let spec = spec.as_object().ok_or_else(|| at("must be an object"))?;
        if let Some(d) = spec.get("description") {
            if d.as_str()
                .is_none_or(|d| d.chars().count() > MAX_TEXT_CHARS)
            {
                return Err(at(&format!(
                    "description must be a string of at most {MAX_TEXT_CHARS} characters"
                )));
            }
        }
        let kind = match spec.get("type").and_then(Value::as_str) {
            Some("string") => match spec.get("enum") {
                None => FieldKind::Text,
                Some(e) => {
                    let values: Option<Vec<String>> = e.as_array().and_then(|a| {
                        a.iter()
                            .map(|v| {
                                v.as_str()
                                    .filter(|v| {
                                        !v.trim().is_empty() && v.chars().count() <= MAX_NAME_CHARS
                                    })
                                    .map(String::from)
                            })
                            .collect()
                    });
                    match values {
                        Some(v) if !v.is_empty() && v.len() <= MAX_LIST_ITEMS => {
                            FieldKind::Choice(v)
                        }
                        _ => {
                            return Err(at(&format!(
                                "enum must list 1 to {MAX_LIST_ITEMS} non-empty strings of at most {MAX_NAME_CHARS} characters"
                            )))
                        }
                    }
                }
            },
            Some("number") => FieldKind::Number,
            Some("integer") => FieldKind::Integer,
            Some("boolean") => FieldKind::Boolean,
            _ => return Err(at("type must be one of string, number, integer, boolean")),
        };
        out.push(Field {
            name: name.clone(),
            kind,
        });
    }
    Ok(out)
}

/// The words of `text`, lower case, split at anything but letters, digits
/// and apostrophes (a typographic apostrophe reads as the plain one); a
/// point between digits stays (`3.5`).
fn words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let keep = |i: usize| {
        let c = chars[i];
        c.is_alphanumeric()
            || c == '\''
            || c == '\u{2019}'
            || (c == '.'
                && i > 0
                && chars[i - 1].is_ascii_digit()
                && chars.get(i + 1).is_some_and(char::is_ascii_digit))
    };
    let mut out = Vec::new();
    let mut word = String::new();
    for (i, c) in chars.iter().enumerate() {
        if keep(i) {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word).replace('\u{2019}', "'"));
            if out.len() == MAX_WORDS {
                return out;
            }
        }
    }
    if !word.is_empty() {
        out.push(word.replace('\u{2019}', "'"));
    }
    out
}

/// Whether `needle` (a phrase's words) occurs in `hay` as consecutive words.
fn contains_words(hay: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

const YES_WORDS: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "correct",
    "right",
    "absolutely",
    "definitely",
    "certainly",
    "ok",
    "okay",
];
const NO_WORDS: &[&str] = &[
    "no", "nope", "not", "never", "don't", "can't", "cannot", "won't",
];

/// Two words that say yes without a yes ("I can make it", "that works").
const YES_PAIRS: &[(&str, &str)] = &[
    ("i", "can"),
    ("i", "will"),
    ("i", "do"),
    ("we", "can"),
    ("we", "will"),
    ("that", "works"),
    ("sounds", "good"),
];

/// The callee's yes or no in `words`: the last of either that is said (a
/// no word, then a yes word or pair, at each position from the end).
fn yes_or_no(words: &[String]) -> Option<bool> {
    (0..words.len()).rev().find_map(|i| {
        let w = words[i].as_str();
        if NO_WORDS.contains(&w) {
            Some(false)
        } else if YES_WORDS.contains(&w)
            || (i > 0 && YES_PAIRS.contains(&(words[i - 1].as_str(), w)))
        {
            Some(true)
        } else {
            None
        }
    })
}

/// Number words below twenty, by value (also the local engine's).
pub const UNITS: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
/// The tens' words from twenty, by value (`TENS[0]` is twenty).
pub const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// The first number in `words`: digits ("42", "3.5"), or spelled below a
/// hundred ("forty two").
fn first_number(words: &[String]) -> Option<f64> {
    for (i, w) in words.iter().enumerate() {
        if let Ok(n) = w.parse::<f64>() {
            if n.is_finite() {
                return Some(n);
            }
        }
        if let Some(u) = UNITS.iter().position(|u| u == w) {
            return Some(u as f64);
        }
        if let Some(t) = TENS.iter().position(|t| t == w) {
            let tens = 20 + 10 * t;
            let unit = words
                .get(i + 1)
                .and_then(|n| UNITS[1..10].iter().position(|u| u == n))
                .map_or(0, |u| u + 1);
            return Some((tens + unit) as f64);
        }
    }
    None
}

/// The words of a field's name (`preferred_day` -> `preferred day`), to
/// find the agent's question about it.
fn name_words(name: &str) -> Vec<String> {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The callee's words that answer the agent's question about `field`: the
/// callee turns after the last agent turn naming the field (its name's
/// words, `_` as a space), up to the next agent turn; `None` when no agent
/// turn names it.
fn answer_to(lines: &[Line<'_>], field: &str) -> Option<Vec<String>> {
    let key = name_words(field);
    let asked = lines
        .iter()
        .rposition(|l| !l.callee && contains_words(&words(l.text), &key))?;
    Some(
        lines[asked + 1..]
            .iter()
            .take_while(|l| l.callee)
            .flat_map(|l| words(l.text))
            .collect(),
    )
}

/// One field's value by keyword rules, from the callee's answer to the
/// agent's question naming it, else from all the callee said:
/// - `enum`: the value said last (its words, case-insensitive);
/// - `boolean`: the last yes or no;
/// - `number` / `integer`: the first number (digits, or spelled below 100);
/// - `string`: the answer's words as said, only when the agent asked.
fn extract_field(field: &Field, lines: &[Line<'_>]) -> Value {
    let answer = answer_to(lines, &field.name);
    let all: Vec<String> = lines
        .iter()
        .filter(|l| l.callee)
        .flat_map(|l| words(l.text))
        .collect();
    let heard = answer.as_deref().filter(|a| !a.is_empty()).unwrap_or(&all);
    match &field.kind {
        FieldKind::Choice(values) => {
            // The value mentioned last: people correct themselves.
            let mut best: Option<(usize, &String)> = None;
            for v in values {
                let vw = words(v);
                if vw.is_empty() {
                    continue;
                }
                if let Some(at) = heard.windows(vw.len()).rposition(|w| w == vw.as_slice()) {
                    if best.is_none_or(|(b, _)| at >= b) {
                        best = Some((at, v));
                    }
                }
            }
            best.map_or(Value::Null, |(_, v)| Value::String(v.clone()))
        }
        FieldKind::Boolean => yes_or_no(heard).map_or(Value::Null, Value::Bool),
        FieldKind::Number => first_number(heard)
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        FieldKind::Integer => first_number(heard)
            .filter(|n| n.fract() == 0.0 && n.abs() < 9.0e15)
            .map_or(Value::Null, |n| Value::from(n as i64)),
        FieldKind::Text => match answer {
            Some(a) if !a.is_empty() => Value::String(cut(&a.join(" "), MAX_VALUE_CHARS)),
            _ => Value::Null,
        },
    }
}

/// Every field of `fields`, by [`extract_field`]'s rules.
pub fn extract(fields: &[Field], lines: &[Line<'_>]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (f.name.clone(), extract_field(f, lines)))
        .collect()
}

/// `text` cut to at most `max` characters, on a char boundary.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_string(),
        None => text.to_string(),
    }
}

/// The analysis without a language model: the engine's `summary` (else the
/// callee's first words), the lexicon [`sentiment`], success when the
/// engine's `outcome` is one of the plan's `success_outcomes`, and the
/// plan's data by [`extract`] (an invalid schema, which validation keeps
/// out, extracts nothing).
pub fn analyse_locally(
    plan: &AnalysisPlan,
    lines: &[Line<'_>],
    summary: Option<&str>,
    outcome: Option<&str>,
) -> CallAnalysis {
    let callee: Vec<&str> = lines.iter().filter(|l| l.callee).map(|l| l.text).collect();
    let summary = summary
        .filter(|s| !s.trim().is_empty())
        .map(|s| cut(s.trim(), MAX_SUMMARY_CHARS))
        .or_else(|| {
            let said = callee.join(" ");
            let said = said.trim();
            (!said.is_empty()).then(|| cut(&format!("The callee said: \"{said}\""), 300))
        });
    let success = (!plan.success_outcomes.is_empty()).then(|| {
        outcome.is_some_and(|o| {
            plan.success_outcomes
                .iter()
                .any(|s| s.trim().eq_ignore_ascii_case(o.trim()))
        })
    });
    let data = plan
        .data_schema
        .as_ref()
        .map(|schema| extract(&schema_fields(schema).unwrap_or_default(), lines));
    CallAnalysis {
        summary,
        sentiment: sentiment(outcome, callee.iter().copied()),
        success,
        data,
        source: AnalysisSource::Local,
    }
}

/// What an engine with a language model is asked for at the end of a call:
/// the reply it must give (one JSON object) and what each part means. The
/// schema given to the model is [`engine_reply_schema`].
pub fn engine_instructions(plan: &AnalysisPlan) -> String {
    let mut t = String::from(
        "The call has ended. Do not speak. Analyse the whole conversation above and reply with \
         one JSON object only, no other text: {\"summary\": a two-sentence summary of the call, \
         \"sentiment\": how the callee came across, one of \"positive\", \"neutral\", \"negative\", \
         \"success\": whether the call reached its goal (true or false), or null when that cannot \
         be judged, \"data\": an object with the fields below, each null when the call did not \
         tell}.",
    );
    match &plan.success_criteria {
        Some(c) => t.push_str(&format!(" The call reached its goal when: {c}")),
        None if !plan.success_outcomes.is_empty() => t.push_str(&format!(
            " The call reached its goal when its outcome was one of: {}.",
            plan.success_outcomes.join(", ")
        )),
        None => t.push_str(" No goal was given: success is null."),
    }
    match &plan.data_schema {
        Some(schema) => t.push_str(&format!(
            " The data fields, as a JSON Schema: {}",
            serde_json::to_string(schema).unwrap_or_default()
        )),
        None => t.push_str(" No data fields were asked for: data is null."),
    }
    t
}

/// The JSON Schema of the reply [`engine_instructions`] asks for (for APIs
/// that constrain their output to a schema).
pub fn engine_reply_schema(plan: &AnalysisPlan) -> Value {
    serde_json::json!({"type": "object", "required": ["summary", "sentiment", "success", "data"],
        "additionalProperties": false, "properties": {
            "summary": {"type": "string"},
            "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
            "success": {"type": ["boolean", "null"]},
            "data": plan.data_schema.clone().unwrap_or(serde_json::json!({"type": "null"}))}})
}

/// An engine's reply to [`engine_instructions`], checked: the text must be
/// one JSON object (a code fence around it is tolerated); the summary is cut
/// to [`MAX_SUMMARY_CHARS`]; an unknown sentiment is `neutral`; `success` is
/// kept only as a boolean; `data` keeps exactly the plan's fields, each
/// `null` unless of its declared type (an `enum` value only as declared), a
/// string cut to [`MAX_VALUE_CHARS`]. `None` when the text is no JSON object.
pub fn from_engine_reply(plan: &AnalysisPlan, text: &str) -> Option<CallAnalysis> {
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|t| t.strip_suffix("```"))
        .unwrap_or(trimmed);
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let obj = v.as_object()?;
    let summary = obj
        .get("summary")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| cut(s, MAX_SUMMARY_CHARS));
    let sentiment = match obj.get("sentiment").and_then(Value::as_str) {
        Some("positive") => Sentiment::Positive,
        Some("negative") => Sentiment::Negative,
        _ => Sentiment::Neutral,
    };
    let success = obj.get("success").and_then(Value::as_bool);
    let data = plan.data_schema.as_ref().map(|schema| {
        let given = obj.get("data").and_then(Value::as_object);
        schema_fields(schema)
            .unwrap_or_default()
            .into_iter()
            .map(|f| {
                let v = given.and_then(|g| g.get(&f.name)).unwrap_or(&Value::Null);
                let kept = match (&f.kind, v) {
                    (FieldKind::Text, Value::String(s)) => Value::String(cut(s, MAX_VALUE_CHARS)),
                    (FieldKind::Choice(values), Value::String(s)) if values.contains(s) => {
                        v.clone()
                    }
                    (FieldKind::Number, Value::Number(_)) => v.clone(),
                    (FieldKind::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => v.clone(),
                    (FieldKind::Boolean, Value::Bool(_)) => v.clone(),
                    _ => Value::Null,
                };
                (f.name, kept)
            })
            .collect()
    });
    Some(CallAnalysis {
        summary,
        sentiment,
        success,
        data,
        source: AnalysisSource::Engine,
    })
}

/// How the callee came across, from the post-call analysis ([`sentiment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines<'a>(turns: &[(bool, &'a str)]) -> Vec<Line<'a>> {
        turns
            .iter()
            .map(|&(callee, text)| Line { callee, text })
            .collect()
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

    #[test]
    fn a_schema_is_checked_field_by_field() {
        let ok = json!({"type": "object", "properties": {
            "confirmed": {"type": "boolean", "description": "Did they confirm?"},
            "preferred_day": {"type": "string", "enum": ["Monday", "Tuesday"]},
            "party_size": {"type": "integer"},
            "notes": {"type": "string"}}});
        let fields = schema_fields(&ok).unwrap();
        assert_eq!(fields.len(), 4);
        assert!(fields.iter().any(|f| f.name == "preferred_day"
            && f.kind == FieldKind::Choice(vec!["Monday".into(), "Tuesday".into()])));
        for (bad, says) in [
            (json!([]), "JSON Schema object"),
            (json!({"type": "array"}), "type must be"),
            (json!({"type": "object"}), "properties must be an object"),
            (json!({"type": "object", "properties": {}}), "1 to 20"),
            (
                json!({"type": "object", "properties": {"a b": {"type": "string"}}}),
                "field names",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "array"}}}),
                "properties.a: type",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string", "enum": []}}}),
                "enum must",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string", "description": 5}}}),
                "description",
            ),
        ] {
            let err = schema_fields(&bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let many: Map<String, Value> = (0..21)
            .map(|i| (format!("f{i}"), json!({"type": "boolean"})))
            .collect();
        assert!(schema_fields(&json!({"type": "object", "properties": many})).is_err());
    }

    #[test]
    fn fields_come_from_the_answer_to_the_question_naming_them() {
        let call = lines(&[
            (false, "Hi, this is Demo Dental. Can you make your appointment tomorrow at ten?"),
            (true, "Yes, I can make it."),
            (false, "Great. Which day suits you for the follow-up? The preferred day, Monday or Tuesday?"),
            (true, "Monday. No wait, Tuesday."),
            (false, "And the party size?"),
            (true, "We'll be forty two people"),
            (false, "Any notes for the dentist?"),
            (true, "Bring the x-rays please"),
        ]);
        let schema = json!({"type": "object", "properties": {
            "appointment": {"type": "boolean"},
            "preferred_day": {"type": "string", "enum": ["Monday", "Tuesday"]},
            "party_size": {"type": "integer"},
            "notes": {"type": "string"},
            "budget": {"type": "number"}}});
        let data = extract(&schema_fields(&schema).unwrap(), &call);
        assert_eq!(data["appointment"], json!(true));
        assert_eq!(data["preferred_day"], json!("Tuesday"));
        assert_eq!(data["party_size"], json!(42));
        assert_eq!(data["notes"], json!("bring the x rays please"));
        // Never asked: from all the callee said (a number: 42 is the first).
        assert_eq!(data["budget"], json!(42.0));
    }

    #[test]
    fn nothing_said_extracts_nulls_and_a_no_is_false() {
        let schema = json!({"type": "object", "properties": {
            "confirmed": {"type": "boolean"}, "notes": {"type": "string"},
            "size": {"type": "integer"}, "day": {"type": "string", "enum": ["Friday"]}}});
        let fields = schema_fields(&schema).unwrap();
        let data = extract(&fields, &lines(&[(false, "Hello?")]));
        assert!(data.values().all(Value::is_null), "{data:?}");
        let data = extract(
            &fields,
            &lines(&[(false, "Are you confirmed?"), (true, "No, I can't.")]),
        );
        assert_eq!(data["confirmed"], json!(false));
        let data = extract(
            &fields,
            &lines(&[(false, "Are you confirmed?"), (true, "that I can make it")]),
        );
        assert_eq!(data["confirmed"], json!(true));
        assert_eq!(data["notes"], Value::Null);
    }

    #[test]
    fn the_local_analysis_reads_outcome_summary_and_words() {
        let plan = AnalysisPlan {
            success_outcomes: vec!["yes".into(), "booked".into()],
            success_criteria: None,
            data_schema: Some(json!({"type": "object", "properties": {
                "confirmed": {"type": "boolean"}}})),
        };
        let call = lines(&[(false, "Can you make it?"), (true, "Yes, great!")]);
        let a = analyse_locally(&plan, &call, Some("Callee said yes."), Some("YES"));
        assert_eq!(a.summary.as_deref(), Some("Callee said yes."));
        assert_eq!(a.sentiment, Sentiment::Positive);
        assert_eq!(a.success, Some(true));
        assert_eq!(a.data.unwrap()["confirmed"], json!(true));
        assert_eq!(a.source, AnalysisSource::Local);
        let a = analyse_locally(&plan, &call, None, Some("no_match"));
        assert_eq!(a.success, Some(false));
        assert_eq!(
            a.summary.as_deref(),
            Some("The callee said: \"Yes, great!\"")
        );
        // No success outcomes, no schema: success unknown, no data.
        let a = analyse_locally(&AnalysisPlan::default(), &call, None, Some("yes"));
        assert_eq!((a.success, a.data), (None, None));
        let v = serde_json::to_value(analyse_locally(&plan, &[], None, None)).unwrap();
        assert_eq!(
            v,
            json!({"summary": null, "sentiment": "neutral", "success": false,
                   "data": {"confirmed": null}, "source": "local"})
        );
    }

    #[test]
    fn an_engine_reply_is_checked_against_the_plan() {
        let plan = AnalysisPlan {
            success_outcomes: vec![],
            success_criteria: Some("The callee confirms the appointment.".into()),
            data_schema: Some(json!({"type": "object", "properties": {
                "confirmed": {"type": "boolean"}, "day": {"type": "string", "enum": ["Monday"]},
                "size": {"type": "integer"}, "notes": {"type": "string"}}})),
        };
        let asked = engine_instructions(&plan);
        assert!(
            asked.contains("The callee confirms the appointment.") && asked.contains("\"day\""),
            "{asked}"
        );
        assert_eq!(
            engine_reply_schema(&plan)["properties"]["data"]["properties"]["size"],
            json!({"type": "integer"})
        );
        let reply = "```json\n{\"summary\": \"Confirmed.\", \"sentiment\": \"positive\", \"success\": true, \
            \"data\": {\"confirmed\": true, \"day\": \"Sunday\", \"size\": 2.5, \"notes\": \"bring x-rays\", \"extra\": 1}}\n```";
        let a = from_engine_reply(&plan, reply).unwrap();
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"summary": "Confirmed.", "sentiment": "positive", "success": true, "source": "engine",
                   "data": {"confirmed": true, "day": null, "size": null, "notes": "bring x-rays"}})
        );
        let a = from_engine_reply(&plan, r#"{"sentiment": "ecstatic", "success": "yes"}"#).unwrap();
        assert_eq!(
            (a.sentiment, a.success, a.summary),
            (Sentiment::Neutral, None, None)
        );
        assert!(a.data.unwrap().values().all(Value::is_null));
        assert_eq!(
            from_engine_reply(&plan, "Sure! Here is the analysis."),
            None
        );
        assert_eq!(from_engine_reply(&plan, "[1, 2]"), None);
    }

    #[test]
    fn numbers_spelled_or_in_digits() {
        let n = |s: &str| first_number(&words(s));
        assert_eq!(n("about 3.5 hours"), Some(3.5));
        assert_eq!(n("twenty one people"), Some(21.0));
        assert_eq!(n("ninety"), Some(90.0));
        assert_eq!(n("seven"), Some(7.0));
        assert_eq!(n("none at all"), None);
    }
}
