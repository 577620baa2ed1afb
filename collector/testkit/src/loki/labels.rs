//! Prometheus label-set strings (`{a="b", c='d'}`), parsed as PromQL's `ParseMetric` does.

use thiserror::Error;

/// Why a label-set string does not parse; positions are byte offsets into it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LabelSyntaxError {
    #[error("expected {expected:?} at {at}, found {found:?}")]
    Expected {
        expected: char,
        at: usize,
        found: Option<char>,
    },
    #[error("unexpected character at {0} (only = matchers)")]
    NotEquals(usize),
    #[error("unexpected =~ in a stream's labels")]
    RegexMatcher,
    #[error("unexpected trailing input at {0}")]
    TrailingInput(usize),
    #[error("invalid label name at {0}")]
    InvalidNameAt(usize),
    #[error("invalid label name {0:?}")]
    InvalidName(String),
    #[error("expected a quoted string at {0}")]
    ExpectedString(usize),
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("unterminated quoted string (newline)")]
    NewlineInString,
    #[error("invalid UTF-8 in a label value")]
    InvalidUtf8,
    #[error("unterminated escape")]
    UnterminatedEscape,
    #[error("invalid escape sequence")]
    InvalidEscape,
    #[error("octal escape out of range")]
    OctalOutOfRange,
    #[error("invalid unicode escape")]
    InvalidUnicode,
    #[error("unknown escape sequence \\{0}")]
    UnknownEscape(char),
}

use LabelSyntaxError as E;

/// Parses a Prometheus label-set string (`{a="b", c='d', e=`raw`}`) as PromQL's
/// `ParseMetric` does: Go string escapes in quoted values, no raw newline in them, an optional
/// trailing comma, names `[a-zA-Z_][a-zA-Z0-9_]*`, nothing after the closing brace.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, LabelSyntaxError> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    p.ws();
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let name = p.name()?;
        p.ws();
        if !p.eat(b'=') {
            return Err(E::NotEquals(p.pos));
        }
        if p.peek() == Some(b'~') {
            return Err(E::RegexMatcher);
        }
        p.ws();
        let value = p.string()?;
        out.push((name, value));
        p.ws();
        if p.eat(b',') {
            continue;
        }
        p.ws();
        p.expect(b'}')?;
        break;
    }
    p.ws();
    if p.pos != p.s.len() {
        return Err(E::TrailingInput(p.pos));
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), LabelSyntaxError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(E::Expected {
                expected: c as char,
                at: self.pos,
                found: self.peek().map(|b| b as char),
            })
        }
    }
    fn name(&mut self) -> Result<String, LabelSyntaxError> {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
            self.pos += 1;
        }
        let name = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default();
        if !valid_label_name(name) {
            return Err(E::InvalidNameAt(start));
        }
        Ok(name.to_owned())
    }
    fn string(&mut self) -> Result<String, LabelSyntaxError> {
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'' | b'`')) => q,
            _ => return Err(E::ExpectedString(self.pos)),
        };
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            let c = self.peek().ok_or(E::Unterminated)?;
            self.pos += 1;
            if c == quote {
                break;
            }
            if quote == b'`' {
                bytes.push(c);
                continue;
            }
            match c {
                b'\n' => return Err(E::NewlineInString),
                b'\\' => self.escape(quote, &mut bytes)?,
                c => bytes.push(c),
            }
        }
        String::from_utf8(bytes).map_err(|_| E::InvalidUtf8)
    }
    fn digits(&mut self, n: usize, radix: u32) -> Result<u32, LabelSyntaxError> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self
                .peek()
                .and_then(|b| (b as char).to_digit(radix))
                .ok_or(E::InvalidEscape)?;
            self.pos += 1;
            v = v * radix + d;
        }
        Ok(v)
    }
    /// Go's `strconv.Unquote` escapes.
    fn escape(&mut self, quote: u8, out: &mut Vec<u8>) -> Result<(), LabelSyntaxError> {
        let c = self.peek().ok_or(E::UnterminatedEscape)?;
        self.pos += 1;
        let simple = match c {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            b'\\' => Some(b'\\'),
            q if q == quote => Some(q),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        match c {
            b'x' => out.push(self.digits(2, 16)? as u8),
            b'0'..=b'7' => {
                self.pos -= 1;
                let v = self.digits(3, 8)?;
                out.push(u8::try_from(v).map_err(|_| E::OctalOutOfRange)?);
            }
            b'u' | b'U' => {
                let cp = self.digits(if c == b'u' { 4 } else { 8 }, 16)?;
                let ch = char::from_u32(cp).ok_or(E::InvalidUnicode)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(E::UnknownEscape(c as char)),
        }
        Ok(())
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub(super) fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_strings_parse_like_promql() {
        assert_eq!(
            parse_labels(r#"{job="api", level="ERROR"}"#).unwrap(),
            vec![
                ("job".into(), "api".into()),
                ("level".into(), "ERROR".into())
            ]
        );
        assert_eq!(
            parse_labels("{a=\"x\\\"y\\\\z\\n\\u00e9\",b='q',c=`r\\aw`,}").unwrap(),
            vec![
                ("a".into(), "x\"y\\z\né".into()),
                ("b".into(), "q".into()),
                ("c".into(), "r\\aw".into())
            ]
        );
        for (bad, why) in [
            (
                "job=\"x\"",
                E::Expected {
                    expected: '{',
                    at: 0,
                    found: Some('j'),
                },
            ),
            (
                "{job=\"x\"",
                E::Expected {
                    expected: '}',
                    at: 8,
                    found: None,
                },
            ),
            ("{0job=\"x\"}", E::InvalidNameAt(1)),
            ("{job=~\"x\"}", E::RegexMatcher),
            ("{job=\"a\nb\"}", E::NewlineInString),
            ("{job=\"x\"} extra", E::TrailingInput(10)),
            ("{job=\"\\q\"}", E::UnknownEscape('q')),
            ("{job=x}", E::ExpectedString(5)),
        ] {
            assert_eq!(parse_labels(bad), Err(why), "{bad:?}");
        }
    }
}
