//! SIP message parsing and serialisation.
//!
//! The wire type is [`Message`]: the start line, the header fields (unfolded,
//! compact names expanded, names in canonical case) and the body bytes.
//! [`Message::to_rsip`] gives the rsip 0.4 typed view of the same message.
//!
//! Why our own wire type rather than `rsip::SipMessage` end to end: rsip 0.4
//! cannot carry everything a peer may legally send or that we must echo
//! byte-exact: its `Method` has no extension methods, its `Uri` drops URI
//! headers and prints `Scheme::Other` as `scheme://`, and a Digest `uri=` or
//! an ACK/BYE Request-URI must be the peer's Contact text exactly. So the
//! pre-parser here does what rsip lacks (framing, Content-Length, line
//! folding, compact names, strict start lines, scalar ranges) and keeps the
//! text as sent; rsip is the typed view on top.
//!
//! Nothing here panics on any input (fuzz-style tests in `tests/sip_parser.rs`).

use std::fmt;

/// Largest datagram/message we accept (RFC 3261 says UDP messages over
/// ~1300 bytes should go over TCP; we allow up to 64 KiB on any transport).
pub const MAX_MESSAGE: usize = 65_535;

/// Why a message was rejected. [`ParseError::code`] is stable (logs, metrics, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    TooLarge,
    /// No empty line ends the header section.
    NoHeaderEnd,
    /// The header section is not UTF-8.
    NotUtf8,
    BadStartLine(&'static str),
    /// SIP version other than SIP/2.0.
    BadVersion,
    BadStatusCode,
    BadHeader(String),
    MissingHeader(&'static str),
    DuplicateHeader(&'static str),
    BadCSeq,
    CSeqMethodMismatch,
    BadContentLength,
    /// The body is shorter than Content-Length says.
    BodyTruncated {
        declared: usize,
        got: usize,
    },
    BadVia,
    BadAddress(&'static str),
    BadScalar(&'static str),
    /// A stream message without Content-Length.
    MissingContentLength,
    /// rsip 0.4 cannot represent this (valid) message.
    RsipUnrepresentable(String),
}

impl ParseError {
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::TooLarge => "too_large",
            ParseError::NoHeaderEnd => "no_header_end",
            ParseError::NotUtf8 => "not_utf8",
            ParseError::BadStartLine(_) => "bad_start_line",
            ParseError::BadVersion => "bad_version",
            ParseError::BadStatusCode => "bad_status_code",
            ParseError::BadHeader(_) => "bad_header",
            ParseError::MissingHeader(_) => "missing_header",
            ParseError::DuplicateHeader(_) => "duplicate_header",
            ParseError::BadCSeq => "bad_cseq",
            ParseError::CSeqMethodMismatch => "cseq_method_mismatch",
            ParseError::BadContentLength => "bad_content_length",
            ParseError::BodyTruncated { .. } => "body_truncated",
            ParseError::BadVia => "bad_via",
            ParseError::BadAddress(_) => "bad_address",
            ParseError::BadScalar(_) => "bad_scalar",
            ParseError::MissingContentLength => "missing_content_length",
            ParseError::RsipUnrepresentable(_) => "rsip_unrepresentable",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadStartLine(w) => write!(f, "bad_start_line: {w}"),
            ParseError::BadHeader(n) => write!(f, "bad_header: {n}"),
            ParseError::MissingHeader(n) => write!(f, "missing_header: {n}"),
            ParseError::DuplicateHeader(n) => write!(f, "duplicate_header: {n}"),
            ParseError::BodyTruncated { declared, got } => {
                write!(f, "body_truncated: Content-Length {declared}, {got} bytes")
            }
            ParseError::BadAddress(n) => write!(f, "bad_address: {n}"),
            ParseError::BadScalar(n) => write!(f, "bad_scalar: {n}"),
            ParseError::RsipUnrepresentable(e) => write!(f, "rsip_unrepresentable: {e}"),
            e => f.write_str(e.code()),
        }
    }
}

impl std::error::Error for ParseError {}

/// Request line or status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// A SIP message: normalised header fields in order, body bytes exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    /// (canonical name, value) in wire order; one entry per header line.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// RFC 3261 7.3.3 and later RFCs: compact form -> full name.
pub fn expand_compact(name: &str) -> Option<&'static str> {
    if name.len() != 1 {
        return None;
    }
    Some(match name.as_bytes()[0].to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

const CANONICAL: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Content-Length",
    "Content-Type",
    "Max-Forwards",
    "Route",
    "Record-Route",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Authorization",
    "Proxy-Authorization",
    "Allow",
    "Accept",
    "Supported",
    "Require",
    "User-Agent",
    "Server",
    "Subject",
    "Expires",
    "Reason",
];

/// Full, canonically cased header name for any spelling (compact or not).
pub fn canonical_name(name: &str) -> String {
    if let Some(full) = expand_compact(name) {
        return full.to_string();
    }
    for c in CANONICAL {
        if c.eq_ignore_ascii_case(name) {
            return (*c).to_string();
        }
    }
    name.to_string()
}

pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one UDP datagram (RFC 3261 18.3: Content-Length, if present, must
/// not exceed the datagram; bytes past it are discarded; without it the body
/// runs to the end of the datagram).
pub fn parse(datagram: &[u8]) -> Result<Message, ParseError> {
    parse_framed(datagram, false).map(|(m, _)| m)
}

/// Parses the message at the start of `buf`; returns it and the bytes used.
/// `stream`: Content-Length is mandatory (TCP/TLS framing).
fn parse_framed(buf: &[u8], stream: bool) -> Result<(Message, usize), ParseError> {
    if buf.len() > MAX_MESSAGE && !stream {
        return Err(ParseError::TooLarge);
    }
    // Leading CRLFs are keep-alives (RFC 5626) / tolerated (RFC 3261 7.5).
    let lead = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let data = &buf[lead..];
    if data.is_empty() {
        return Err(ParseError::Empty);
    }
    let head_end = find(data, b"\r\n\r\n").ok_or(ParseError::NoHeaderEnd)?;
    if head_end > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    let head = std::str::from_utf8(&data[..head_end]).map_err(|_| ParseError::NotUtf8)?;
    let rest = &data[head_end + 4..];

    let mut lines = head.split("\r\n");
    let start_line = lines.next().unwrap_or("");
    let start = parse_start_line(start_line)?;

    // Unfold: a line starting with SP/HTAB continues the previous one.
    let mut raw: Vec<String> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            match raw.last_mut() {
                Some(prev) => {
                    prev.push(' ');
                    prev.push_str(line.trim_start_matches([' ', '\t']));
                }
                None => {
                    return Err(ParseError::BadHeader(
                        "continuation before any header".into(),
                    ))
                }
            }
        } else {
            raw.push(line.to_string());
        }
    }
    let mut headers = Vec::with_capacity(raw.len());
    for line in raw {
        let Some(colon) = line.find(':') else {
            return Err(ParseError::BadHeader(truncate(&line)));
        };
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(ParseError::BadHeader(truncate(name)));
        }
        let value = collapse_lws(line[colon + 1..].trim_matches([' ', '\t']));
        headers.push((canonical_name(name), value));
    }
    let mut msg = Message {
        start,
        headers,
        body: Vec::new(),
    };
    msg.validate()?;

    let cl = match msg.single("Content-Length")? {
        Some(v) => Some(
            parse_scalar(v, 9, "Content-Length").map_err(|_| ParseError::BadContentLength)?
                as usize,
        ),
        None => None,
    };
    let used_body = match (cl, stream) {
        (Some(n), _) => {
            if rest.len() < n {
                if stream {
                    // Caller (the framer) waits for more bytes.
                    return Err(ParseError::BodyTruncated {
                        declared: n,
                        got: rest.len(),
                    });
                }
                return Err(ParseError::BodyTruncated {
                    declared: n,
                    got: rest.len(),
                });
            }
            n
        }
        (None, true) => return Err(ParseError::MissingContentLength),
        (None, false) => rest.len(),
    };
    if used_body > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    msg.body = rest[..used_body].to_vec();
    Ok((msg, lead + head_end + 4 + used_body))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Collapses runs of SP/HTAB to one SP (after unfolding), outside quoted strings.
fn collapse_lws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quotes = QuotedStrings::default();
    let mut prev_sp = false;
    for c in s.chars() {
        if quotes.inside(c) {
            out.push(c);
            prev_sp = false;
            continue;
        }
        if c == ' ' || c == '\t' {
            if !prev_sp {
                out.push(' ');
            }
            prev_sp = true;
            continue;
        }
        prev_sp = false;
        out.push(c);
    }
    out
}

/// Follows RFC 3261 quoted strings (`"..."`, `\` escapes) through a scan.
#[derive(Default)]
struct QuotedStrings {
    in_quotes: bool,
    escaped: bool,
}

impl QuotedStrings {
    /// Feeds the next character; true when it belongs to a quoted string
    /// (its opening and closing quotes included).
    fn inside(&mut self, c: char) -> bool {
        if self.in_quotes {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.in_quotes = false;
            }
            return true;
        }
        self.in_quotes = c == '"';
        self.in_quotes
    }
}

/// A decimal scalar of at most `max_digits` digits.
fn parse_scalar(v: &str, max_digits: usize, what: &'static str) -> Result<u64, ParseError> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadScalar(what));
    }
    let digits = v.trim_start_matches('0');
    if digits.len() > max_digits {
        return Err(ParseError::BadScalar(what));
    }
    if digits.is_empty() {
        return Ok(0);
    }
    digits
        .parse::<u64>()
        .map_err(|_| ParseError::BadScalar(what))
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (ver, rest) = rest
            .split_once(' ')
            .ok_or(ParseError::BadStartLine("status line"))?;
        if ver != "2.0" {
            return Err(ParseError::BadVersion);
        }
        let (code, reason) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadStatusCode);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::BadStatusCode)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStatusCode);
        }
        if reason.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::BadStartLine(
                "control character in reason phrase",
            ));
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (exactly one SP each).
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(ParseError::BadStartLine(
            "request line must be METHOD SP URI SP SIP/2.0",
        ));
    }
    let (method, uri, ver) = (parts[0], parts[1], parts[2]);
    if !is_token(method) {
        return Err(ParseError::BadStartLine("method is not a token"));
    }
    if !ver.starts_with("SIP/") {
        return Err(ParseError::BadStartLine("no SIP version"));
    }
    if ver != "SIP/2.0" {
        return Err(ParseError::BadVersion);
    }
    check_request_uri(uri)?;
    Ok(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

pub fn check_request_uri(uri: &str) -> Result<(), ParseError> {
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == '"')
    {
        return Err(ParseError::BadStartLine("bad character in Request-URI"));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(ParseError::BadStartLine("Request-URI has no scheme"));
    };
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        || rest.is_empty()
    {
        return Err(ParseError::BadStartLine("bad Request-URI scheme"));
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        // RFC 3261 19.1.5: headers are not allowed in a Request-URI.
        let hostpart = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        if hostpart.contains('?') {
            return Err(ParseError::BadStartLine("headers in Request-URI"));
        }
        let host = hostpart.split(';').next().unwrap_or("");
        if host.is_empty() {
            return Err(ParseError::BadStartLine("Request-URI has no host"));
        }
    }
    Ok(())
}

/// Splits a header value at top-level commas (outside quotes and `<>`).
pub fn split_list(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quotes = QuotedStrings::default();
    let mut angle = false;
    let mut start = 0;
    for (i, c) in v.char_indices() {
        if quotes.inside(c) {
            continue;
        }
        match c {
            '<' => angle = true,
            '>' => angle = false,
            ',' if !angle => {
                out.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// `;name=value` parameters (value may be a quoted string), LWS-tolerant.
/// Names are lowercased; quoted values are unquoted.
pub fn parse_params(s: &str) -> Result<Vec<(String, Option<String>)>, ParseError> {
    let mut out = Vec::new();
    let bytes: Vec<char> = s.chars().collect();
    let mut i = 0;
    let n = bytes.len();
    let skip_ws = |i: &mut usize| {
        while *i < n && (bytes[*i] == ' ' || bytes[*i] == '\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= n {
            break;
        }
        if bytes[i] != ';' {
            return Err(ParseError::BadAddress("parameter list"));
        }
        i += 1;
        skip_ws(&mut i);
        let ns = i;
        while i < n && is_token_char(bytes[i]) {
            i += 1;
        }
        if ns == i {
            return Err(ParseError::BadAddress("empty parameter name"));
        }
        let name: String = bytes[ns..i].iter().collect::<String>().to_ascii_lowercase();
        skip_ws(&mut i);
        let mut value = None;
        if i < n && bytes[i] == '=' {
            i += 1;
            skip_ws(&mut i);
            if i < n && bytes[i] == '"' {
                i += 1;
                let mut v = String::new();
                let mut closed = false;
                while i < n {
                    let c = bytes[i];
                    i += 1;
                    if c == '\\' && i < n {
                        v.push(bytes[i]);
                        i += 1;
                    } else if c == '"' {
                        closed = true;
                        break;
                    } else {
                        v.push(c);
                    }
                }
                if !closed {
                    return Err(ParseError::BadAddress("unterminated quoted parameter"));
                }
                value = Some(v);
            } else {
                let vs = i;
                while i < n && (is_token_char(bytes[i]) || "[]:".contains(bytes[i])) {
                    i += 1;
                }
                value = Some(bytes[vs..i].iter().collect());
            }
        }
        out.push((name, value));
    }
    Ok(out)
}

/// `name-addr / addr-spec` with header parameters (From, To, Contact, Route...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn has_param(&self, name: &str) -> bool {
        self.params.iter().any(|(n, _)| n == name)
    }
}

pub fn parse_name_addr(v: &str) -> Result<NameAddr, ParseError> {
    let v = v.trim();
    let (display, after_display) = if let Some(q) = v.strip_prefix('"') {
        let mut d = String::new();
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some((_, e)) => d.push(e),
                    None => break,
                }
            } else if c == '"' {
                end = Some(i + 1);
                break;
            } else {
                d.push(c);
            }
        }
        let end = end.ok_or(ParseError::BadAddress("unterminated quoted display name"))?;
        let rest = q[end..].trim_start();
        if !rest.starts_with('<') {
            return Err(ParseError::BadAddress("display name without <uri>"));
        }
        (Some(d), rest)
    } else if let Some(lt) = v.find('<') {
        let d = v[..lt].trim();
        if !d.split([' ', '\t']).filter(|t| !t.is_empty()).all(is_token) {
            return Err(ParseError::BadAddress(
                "display name must be tokens or a quoted string",
            ));
        }
        (
            if d.is_empty() {
                None
            } else {
                Some(d.to_string())
            },
            &v[lt..],
        )
    } else {
        (None, v)
    };
    if let Some(inner) = after_display.strip_prefix('<') {
        let gt = inner
            .find('>')
            .ok_or(ParseError::BadAddress("unterminated <uri>"))?;
        let uri = &inner[..gt];
        if uri.is_empty()
            || uri
                .chars()
                .any(|c| c.is_whitespace() || c == '<' || c == '"')
        {
            return Err(ParseError::BadAddress("bad character inside <uri>"));
        }
        if !uri.contains(':') {
            return Err(ParseError::BadAddress("uri without scheme"));
        }
        let params = parse_params(&inner[gt + 1..])?;
        return Ok(NameAddr {
            display,
            uri: uri.to_string(),
            params,
        });
    }
    // addr-spec: the URI runs to the first ';' (those are header params).
    let (uri, params) = match after_display.find(';') {
        Some(i) => (after_display[..i].trim(), &after_display[i..]),
        None => (after_display.trim(), ""),
    };
    if uri.is_empty()
        || !uri.contains(':')
        || uri
            .chars()
            .any(|c| c.is_whitespace() || "<>\"?,".contains(c))
    {
        return Err(ParseError::BadAddress(
            "bad addr-spec (a URI with ?, ',' or ';' needs <>)",
        ));
    }
    Ok(NameAddr {
        display: None,
        uri: uri.to_string(),
        params: parse_params(params)?,
    })
}

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub sent_by: String,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn branch(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == "branch")
            .and_then(|(_, v)| v.as_deref())
    }
}

pub fn parse_via(v: &str) -> Result<Via, ParseError> {
    // SIP / 2.0 / UDP host[:port] *(;param), LWS allowed around '/'.
    let mut it = v.splitn(3, '/');
    let name = it.next().unwrap_or("").trim();
    let ver = it.next().unwrap_or("").trim();
    let rest = it.next().ok_or(ParseError::BadVia)?.trim_start();
    if !name.eq_ignore_ascii_case("SIP") || ver != "2.0" {
        return Err(ParseError::BadVia);
    }
    let t_end = rest.find([' ', '\t']).ok_or(ParseError::BadVia)?;
    let transport = &rest[..t_end];
    if !is_token(transport) {
        return Err(ParseError::BadVia);
    }
    let rest = rest[t_end..].trim_start();
    let (sent_by, params) = match rest.find(';') {
        Some(i) => (rest[..i].trim(), &rest[i..]),
        None => (rest.trim(), ""),
    };
    if sent_by.is_empty()
        || sent_by
            .chars()
            .any(|c| c.is_whitespace() || "<>\",;".contains(c))
    {
        return Err(ParseError::BadVia);
    }
    let params = parse_params(params).map_err(|_| ParseError::BadVia)?;
    Ok(Via {
        transport: transport.to_ascii_uppercase(),
        sent_by: sent_by.to_string(),
        params,
    })
}

const SINGLE: &[&str] = &[
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Content-Length",
    "Max-Forwards",
    "Content-Type",
];

impl Message {
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            _ => None,
        }
    }

    /// First value of a header (canonical name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, comma lists split (for list-valued headers).
    pub fn header_list(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    /// All lines of a header, unsplit (for WWW-Authenticate and friends).
    pub fn header_lines(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn single(&self, name: &'static str) -> Result<Option<&str>, ParseError> {
        let mut it = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(ParseError::DuplicateHeader(name));
        }
        Ok(first)
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or("")
    }

    /// (number, method). Validated at parse time.
    pub fn cseq(&self) -> (u32, &str) {
        self.header("CSeq")
            .and_then(|v| parse_cseq(v).ok())
            .unwrap_or((0, ""))
    }

    pub fn from(&self) -> Option<NameAddr> {
        self.header("From").and_then(|v| parse_name_addr(v).ok())
    }

    pub fn to(&self) -> Option<NameAddr> {
        self.header("To").and_then(|v| parse_name_addr(v).ok())
    }

    pub fn from_tag(&self) -> Option<String> {
        self.from().and_then(|a| a.param("tag").map(str::to_string))
    }

    pub fn to_tag(&self) -> Option<String> {
        self.to().and_then(|a| a.param("tag").map(str::to_string))
    }

    pub fn top_via(&self) -> Option<Via> {
        self.header_list("Via")
            .first()
            .and_then(|v| parse_via(v).ok())
    }

    pub fn top_branch(&self) -> Option<String> {
        self.top_via().and_then(|v| v.branch().map(str::to_string))
    }

    pub fn contact_uri(&self) -> Option<String> {
        self.header_list("Contact")
            .first()
            .and_then(|v| parse_name_addr(v).ok())
            .map(|a| a.uri)
    }

    /// Record-Route entries as sent (full `<uri>;params` values), in order.
    pub fn record_route(&self) -> Vec<String> {
        self.header_list("Record-Route")
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }

    pub fn has_sdp(&self) -> bool {
        !self.body.is_empty()
            && self
                .content_type()
                .map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case("application/sdp")
                })
                .unwrap_or(false)
    }

    fn validate(&self) -> Result<(), ParseError> {
        for h in SINGLE {
            self.single(h)?;
        }
        for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if self.header(h).is_none() {
                return Err(ParseError::MissingHeader(h));
            }
        }
        if self.call_id().trim().is_empty() || self.call_id().contains(char::is_whitespace) {
            return Err(ParseError::BadHeader("Call-ID".into()));
        }
        let (_, cseq_method) = parse_cseq(self.header("CSeq").unwrap_or(""))?;
        if let StartLine::Request { method, .. } = &self.start {
            if method != cseq_method {
                return Err(ParseError::CSeqMethodMismatch);
            }
        }
        if let Some(mf) = self.header("Max-Forwards") {
            parse_scalar(mf, 10, "Max-Forwards")?;
        }
        let vias = self.header_list("Via");
        if vias.is_empty() {
            return Err(ParseError::MissingHeader("Via"));
        }
        for v in vias {
            parse_via(v)?;
        }
        parse_name_addr(self.header("From").unwrap_or(""))?;
        parse_name_addr(self.header("To").unwrap_or(""))?;
        for c in self.header_list("Contact") {
            if c != "*" {
                parse_name_addr(c)?;
            }
        }
        for h in ["Route", "Record-Route"] {
            for r in self.header_list(h) {
                parse_name_addr(r)?;
            }
        }
        Ok(())
    }

    /// Serialises with a correct Content-Length (any existing one is replaced).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512);
        match &self.start {
            StartLine::Request { method, uri } => {
                out.push_str(method);
                out.push(' ');
                out.push_str(uri);
                out.push_str(" SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                out.push_str(&format!("SIP/2.0 {code} {reason}\r\n"));
            }
        }
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut b = out.into_bytes();
        b.extend_from_slice(&self.body);
        b
    }

    /// The rsip 0.4 typed view of this message (normalised text re-tokenised).
    pub fn to_rsip(&self) -> Result<rsip::SipMessage, ParseError> {
        let bytes = self.to_bytes();
        rsip::SipMessage::try_from(bytes.as_slice())
            .map_err(|e| ParseError::RsipUnrepresentable(e.to_string()))
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.to_string(), value.into()));
    }

    pub fn request(method: &str, uri: &str) -> Message {
        Message {
            start: StartLine::Request {
                method: method.into(),
                uri: uri.into(),
            },
            headers: vec![],
            body: vec![],
        }
    }
}

/// `Retry-After` values beyond this (an hour) are cut to it: a trunk is
/// never shunned, nor a redial put off, for longer on one answer's word.
pub const MAX_RETRY_AFTER_S: u32 = 3_600;

/// The seconds of a `Retry-After` value (RFC 3261 §20.33: `delta-seconds
/// [ comment ] *( SEMI retry-param )`), at most [`MAX_RETRY_AFTER_S`]; `None`
/// when it does not start with delta-seconds. Any input, never a panic.
pub fn retry_after_seconds(value: &str) -> Option<u32> {
    let v = value.trim_start();
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let (Some(number), Some(rest)) = (v.get(..digits), v.get(digits..)) else {
        return None;
    };
    let rest = rest.trim_start();
    if number.is_empty() || !(rest.is_empty() || rest.starts_with(['(', ';'])) {
        return None;
    }
    // Past nine significant digits it is over the bound anyway (and u32).
    let significant = number.trim_start_matches('0');
    let secs = if significant.len() > 9 {
        MAX_RETRY_AFTER_S
    } else {
        significant.parse::<u32>().unwrap_or(0)
    };
    Some(secs.min(MAX_RETRY_AFTER_S))
}

/// `CSeq: number SP method`, number < 2^31 (RFC 3261 8.1.1.5).
pub fn parse_cseq(v: &str) -> Result<(u32, &str), ParseError> {
    let mut it = v.split([' ', '\t']).filter(|s| !s.is_empty());
    let num = it.next().ok_or(ParseError::BadCSeq)?;
    let method = it.next().ok_or(ParseError::BadCSeq)?;
    if it.next().is_some() || !is_token(method) {
        return Err(ParseError::BadCSeq);
    }
    let n = parse_scalar(num, 10, "CSeq").map_err(|_| ParseError::BadCSeq)?;
    if n >= 1 << 31 {
        return Err(ParseError::BadCSeq);
    }
    Ok((n as u32, method))
}

/// Reason phrase for the codes we send.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        _ => "Unknown",
    }
}

/// Builds a response to `req` (RFC 3261 8.2.6): Via, From, To, Call-ID,
/// CSeq copied; a To tag added if given and absent.
pub fn response_to(req: &Message, code: u16, to_tag: Option<&str>) -> Message {
    let mut m = Message {
        start: StartLine::Response {
            code,
            reason: reason_phrase(code).to_string(),
        },
        headers: Vec::new(),
        body: Vec::new(),
    };
    for (n, v) in &req.headers {
        if n == "Via"
            || n == "From"
            || n == "Call-ID"
            || n == "CSeq"
            || n == "Record-Route" && code / 100 == 2
        {
            m.headers.push((n.clone(), v.clone()));
        } else if n == "To" {
            let mut v = v.clone();
            if let Some(t) = to_tag {
                if code != 100
                    && parse_name_addr(&v)
                        .map(|a| !a.has_param("tag"))
                        .unwrap_or(false)
                {
                    v.push_str(";tag=");
                    v.push_str(t);
                }
            }
            m.headers.push((n.clone(), v));
        }
    }
    m
}

/// Most bytes a stream connection buffers: room for one largest message
/// (header section and body each up to [`MAX_MESSAGE`]) and a little more.
pub const MAX_STREAM_BUFFER: usize = 2 * MAX_MESSAGE + 1_024;

/// One unit read off a TCP/TLS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Message),
    /// A double CRLF between messages: the peer's keep-alive ping (RFC 5626
    /// 3.5.1), to be answered with a single CRLF.
    Ping,
    /// A lone CRLF between messages: the pong to our ping.
    Pong,
}

/// TCP/TLS framing: feed bytes, take whole messages (Content-Length
/// required) and keep-alives. The buffer is bounded by
/// [`MAX_STREAM_BUFFER`]: past it the stream is refused (`too_large`).
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    overflow: bool,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Buffers `bytes`; beyond [`MAX_STREAM_BUFFER`] they are dropped and
    /// the stream is failed (the next frame is `Err(TooLarge)`).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.overflow || self.buf.len().saturating_add(bytes.len()) > MAX_STREAM_BUFFER {
            self.overflow = true;
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered, not yet a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next message, skipping keep-alives. `None`: need more bytes.
    /// `Some(Err)`: the stream is corrupt (close it).
    pub fn next_message(&mut self) -> Option<Result<Message, ParseError>> {
        loop {
            match self.next_frame()? {
                Ok(Frame::Message(m)) => return Some(Ok(m)),
                Ok(Frame::Ping | Frame::Pong) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next frame. `None`: need more bytes. `Some(Err)`: the stream is
    /// corrupt (close it).
    pub fn next_frame(&mut self) -> Option<Result<Frame, ParseError>> {
        if self.overflow {
            return Some(Err(ParseError::TooLarge));
        }
        let lead = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        if lead > 0 {
            // Keep-alives sit between messages (RFC 5626 3.5.1); other
            // stray CR/LF bytes there are tolerated (RFC 3261 7.5).
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.drain(..4);
                return Some(Ok(Frame::Ping));
            }
            if self.buf.starts_with(b"\r\n") && (lead == 2 || self.buf.len() == 2) {
                self.buf.drain(..2);
                return Some(Ok(Frame::Pong));
            }
            if lead == self.buf.len() && lead < 4 {
                return None; // maybe the start of a ping
            }
            self.buf.drain(..lead);
        }
        if self.buf.is_empty() {
            return None;
        }
        if find(&self.buf, b"\r\n\r\n").is_none() {
            if self.buf.len() > MAX_MESSAGE {
                return Some(Err(ParseError::TooLarge));
            }
            return None;
        }
        match parse_framed(&self.buf, true) {
            Ok((m, used)) => {
                self.buf.drain(..used);
                Some(Ok(Frame::Message(m)))
            }
            Err(ParseError::BodyTruncated { declared, .. }) if declared <= MAX_MESSAGE => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_shield_commas_and_blanks_escapes_included() {
        assert_eq!(
            split_list(r#""a, \"b,c" <sip:x@y>, "d\\", e,,<sip:f,g@h>"#),
            vec![r#""a, \"b,c" <sip:x@y>"#, r#""d\\""#, "e", "<sip:f,g@h>"]
        );
        assert_eq!(
            collapse_lws("a  \t b \"c  \\\"  d\"   e"),
            "a b \"c  \\\"  d\" e"
        );
    }

    #[test]
    fn retry_after_is_parsed_per_rfc_3261_and_bounded() {
        for (v, want) in [
            ("300", Some(300)),
            ("  300  ", Some(300)),
            ("18000;duration=3600", Some(MAX_RETRY_AFTER_S)),
            ("120 (I'm in a meeting)", Some(120)),
            ("120 (in a meeting) ;duration=60;x", Some(120)),
            ("0", Some(0)),
            ("0000000000000000000000000042", Some(42)),
            ("99999999999999999999999999999", Some(MAX_RETRY_AFTER_S)),
            ("4294967296", Some(MAX_RETRY_AFTER_S)),
            ("", None),
            ("-5", None),
            ("abc", None),
            ("12abc", None),
            ("1.5", None),
            ("Fri, 04 Dec 2026 08:00:00 GMT", None),
            ("\u{663}\u{663}", None),
            ("5\u{663}", None),
        ] {
            assert_eq!(retry_after_seconds(v), want, "{v:?}");
        }
    }
}
