//! Topic selectors: what a Mercure subscriber listens to, and what a token grants.
//!
//! Three kinds, all cost-bounded: `exact` (byte comparison; the hub indexes these like native
//! channels), `urlpattern` (WHATWG URL Pattern, compiled by the `urlpattern` crate to `regex`,
//! which matches in linear time) and the 0.x URI templates (RFC 6570, compiled here to a `regex`
//! for the same reason). `*` matches every topic whatever the kind. Patterns are bounded in
//! length, so one evaluation is bounded too.

use std::cell::OnceCell;

use regex::Regex;
use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

/// Longest selector or topic accepted, in bytes.
pub const MAX_LEN: usize = 2048;

/// The base that relative topics and relative URL patterns resolve against: the hub's URL.
/// Herald does not know the public host it is reached by, so it uses a fixed one; relative
/// topics and relative patterns (such as the subscription events') resolve alike.
pub(crate) const HUB_URL: &str = "https://hub.invalid/.well-known/mercure";

/// How a selector is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// Byte-for-byte.
    Exact,
    /// WHATWG URL Pattern.
    UrlPattern,
    /// RFC 6570 URI template (`topic=` of the 0.x protocol); an exact string without `{`.
    Template,
}

impl MatchType {
    /// The name in subscription event topics and documents.
    pub fn name(self) -> &'static str {
        match self {
            MatchType::Exact => "exact",
            MatchType::UrlPattern => "urlpattern",
            MatchType::Template => "template",
        }
    }
}

/// A compiled selector.
#[derive(Debug)]
pub struct Selector {
    /// The kind it was given as.
    pub kind: MatchType,
    /// The text it was given as.
    pub raw: String,
    matcher: Matcher,
}

#[derive(Debug)]
enum Matcher {
    Any,
    Exact,
    Regex(Regex),
    Pattern(Box<UrlPattern>),
}

/// A topic being matched; its URL is parsed at most once, by the first URL pattern that needs it.
pub struct Topic<'a> {
    raw: &'a str,
    url: OnceCell<Option<Url>>,
}

impl<'a> Topic<'a> {
    /// Wraps a topic string.
    pub fn new(raw: &'a str) -> Self {
        Self { raw, url: OnceCell::new() }
    }

    fn url(&self) -> Option<&Url> {
        self.url
            .get_or_init(|| {
                let base = Url::parse(HUB_URL).expect("the hub URL parses");
                Url::options().base_url(Some(&base)).parse(self.raw).ok()
            })
            .as_ref()
    }
}

/// Why a selector was refused.
pub type Invalid = String;

impl Selector {
    /// Compiles `raw` as `kind`.
    ///
    /// # Errors
    ///
    /// Too long, control or format characters, or not a valid pattern or template.
    pub fn parse(kind: MatchType, raw: &str) -> Result<Self, Invalid> {
        check_text(raw, "selector")?;
        let matcher = if raw == "*" {
            Matcher::Any
        } else {
            match kind {
                MatchType::Exact => Matcher::Exact,
                MatchType::Template if !raw.contains(['{', '}']) => Matcher::Exact,
                MatchType::Template => Matcher::Regex(template(raw)?),
                MatchType::UrlPattern => Matcher::Pattern(Box::new(url_pattern(raw)?)),
            }
        };
        // A template without expressions is an exact topic: index it as one.
        let kind = match (&matcher, kind) {
            (Matcher::Exact, MatchType::Template) => MatchType::Exact,
            _ => kind,
        };
        Ok(Self { kind, raw: raw.to_owned(), matcher })
    }

    /// Whether it is a plain topic, which the hub indexes instead of evaluating.
    pub fn is_exact(&self) -> bool {
        matches!(self.matcher, Matcher::Exact)
    }

    /// The key that tells distinct selectors apart.
    pub fn key(&self) -> String {
        format!("{}\u{0}{}", self.kind.name(), self.raw)
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &Topic<'_>) -> bool {
        match &self.matcher {
            Matcher::Any => true,
            Matcher::Exact => self.raw == topic.raw,
            Matcher::Regex(re) => re.is_match(topic.raw),
            Matcher::Pattern(pattern) => {
                topic.url().is_some_and(|url| pattern.test(UrlPatternMatchInput::Url(url.clone())).unwrap_or(false))
            }
        }
    }

    /// Whether any of `topics` matches.
    pub fn matches_any(&self, topics: &[Topic<'_>]) -> bool {
        topics.iter().any(|t| self.matches(t))
    }
}

/// Topics, ids, types and selectors: bounded, and free of control and format characters.
pub fn check_text(s: &str, what: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > MAX_LEN {
        return Err(format!("the {what} is {} bytes; at most {MAX_LEN} are accepted", s.len()));
    }
    if s.chars().any(is_forbidden) {
        return Err(format!("the {what} contains a control or format character"));
    }
    Ok(())
}

/// C0, DEL, C1, and the common Unicode format characters (category Cf).
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{AD}' | '\u{600}'..='\u{605}' | '\u{61C}' | '\u{6DD}' | '\u{70F}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

fn url_pattern(raw: &str) -> Result<UrlPattern, Invalid> {
    let base = Url::parse(HUB_URL).expect("the hub URL parses");
    let init = UrlPatternInit::parse_constructor_string::<Regex>(raw, Some(base))
        .map_err(|e| format!("`{raw}` is not a URL pattern: {e}"))?;
    UrlPattern::parse(init, UrlPatternOptions::default()).map_err(|e| format!("`{raw}` is not a URL pattern: {e}"))
}

/// Percent-encoded octet or unreserved character (RFC 3986).
const UNRESERVED: &str = r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})";
/// Also the reserved characters, for `{+var}` and `{#var}`.
const RESERVED: &str = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})";

/// Compiles an RFC 6570 template (levels 1 to 4) into an anchored regular expression matching
/// every expansion of it.
fn template(raw: &str) -> Result<Regex, Invalid> {
    let bad = |why: &str| format!("`{raw}` is not a URI template: {why}");
    let mut re = String::from("^");
    let mut rest = raw;
    while let Some(open) = rest.find('{') {
        let literal = &rest[..open];
        if literal.contains('}') {
            return Err(bad("`}` without `{`"));
        }
        re.push_str(&regex::escape(literal));
        let close = rest[open..].find('}').ok_or_else(|| bad("`{` without `}`"))? + open;
        re.push_str(&expression(&rest[open + 1..close]).ok_or_else(|| bad("an expression is malformed"))?);
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(bad("`}` without `{`"));
    }
    re.push_str(&regex::escape(rest));
    re.push('$');
    regex::RegexBuilder::new(&re).size_limit(1 << 20).build().map_err(|e| bad(&e.to_string()))
}

/// One `{...}` expression as a regular expression; `None` when malformed.
fn expression(expr: &str) -> Option<String> {
    let (op, vars) = match expr.chars().next()? {
        c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&') => (Some(c), &expr[1..]),
        _ => (None, expr),
    };
    let names: Vec<&str> = vars.split(',').collect();
    for name in &names {
        let name = name.strip_suffix('*').unwrap_or(name);
        let name = match name.split_once(':') {
            Some((name, len)) if !len.is_empty() && len.len() <= 4 && len.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => name,
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'%') {
            return None;
        }
    }
    let value = if matches!(op, Some('+' | '#')) { RESERVED } else { UNRESERVED };
    let (first, sep, named) = match op {
        None | Some('+') => ("", ",", false),
        Some('#') => ("#", ",", false),
        Some('.') => (".", ".", false),
        Some('/') => ("/", "/", false),
        Some(';') => (";", ";", true),
        Some('?') => ("?", "&", true),
        Some('&') => ("&", "&", true),
        Some(_) => return None,
    };
    // Lists and exploded maps add `,` and `=` between values.
    let item = if named { format!(r"(?:[A-Za-z0-9_.%]+(?:=(?:{value}|,)*)?)") } else { format!(r"(?:{value}|[,=])*") };
    let sep = regex::escape(sep);
    Some(if first.is_empty() {
        format!("(?:{item}(?:{sep}{item})*)")
    } else {
        format!("(?:{}{item}(?:{sep}{item})*)?", regex::escape(first))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(kind: MatchType, selector: &str, topic: &str) -> bool {
        Selector::parse(kind, selector).unwrap().matches(&Topic::new(topic))
    }

    #[test]
    fn templates_match_their_expansions_only() {
        let t = MatchType::Template;
        assert!(matches(t, "https://example.com/books/{id}", "https://example.com/books/1"));
        assert!(matches(t, "https://example.com/books/{id}", "https://example.com/books/a%20b"));
        assert!(!matches(t, "https://example.com/books/{id}", "https://example.com/books/1/reviews"));
        assert!(!matches(t, "https://example.com/books/{id}", "https://example.com/movies/1"));
        assert!(matches(t, "https://example.com/{+path}", "https://example.com/a/b/c"));
        assert!(matches(t, "https://example.com/users{/id}", "https://example.com/users/7"));
        assert!(matches(t, "https://example.com/users{/id}", "https://example.com/users"));
        assert!(matches(t, "https://example.com/s{?q,lang}", "https://example.com/s?q=x&lang=fr"));
        assert!(matches(t, "https://example.com/books/1", "https://example.com/books/1"));
        assert!(!matches(t, "https://example.com/books/1", "https://example.com/books/10"));
        assert!(matches(t, "*", "anything at all"));
        for bad in ["https://x/{id", "https://x/id}", "https://x/{}", "https://x/{a b}", "https://x/{id:abc}"] {
            assert!(Selector::parse(t, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_patterns_follow_the_standard() {
        let p = MatchType::UrlPattern;
        assert!(matches(p, "https://example.com/books/:id", "https://example.com/books/1"));
        assert!(!matches(p, "https://example.com/books/:id", "https://example.com/books/1/reviews"));
        assert!(matches(p, "https://example.com/books/*", "https://example.com/books/1/reviews"));
        assert!(matches(p, "https://example.com/users/42/*", "https://example.com/users/42/books/1"));
        assert!(!matches(p, "https://example.com/users/42/*", "https://example.com/users/43/books/1"));
        assert!(matches(p, "https://EXAMPLE.com/books/:id", "https://example.com/books/1"), "hosts ignore case");
        assert!(!matches(p, "https://example.com/Books/:id", "https://example.com/books/1"), "paths do not");
        assert!(matches(
            p,
            "/.well-known/mercure/subscriptions/:t/:m/:s",
            "/.well-known/mercure/subscriptions/exact/a/b"
        ));
        assert!(!matches(p, "https://example.com/:id", "not a url \u{1}"));
        assert!(matches(p, "*", "urn:anything"));
        assert!(Selector::parse(p, "https://example.com/(unclosed").is_err());
    }

    #[test]
    fn exact_is_bytes() {
        assert!(matches(MatchType::Exact, "https://example.com/foo", "https://example.com/foo"));
        assert!(!matches(MatchType::Exact, "https://example.com/foo", "https://example.com/Foo"));
        assert!(!matches(MatchType::Exact, "https://example.com/{id}", "https://example.com/1"));
        assert!(Selector::parse(MatchType::Exact, "a\u{200B}b").is_err());
        assert!(Selector::parse(MatchType::Exact, &"x".repeat(MAX_LEN + 1)).is_err());
    }
}
