//! `{{name}}` templates used by catalogue scripts and rule queries.
//!
//! Names are `a-z`, `0-9`, `_` and `.`; there is no other syntax (no expressions, no
//! filters), so a template can only insert values the caller chose to offer.

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{{{` in {template:?}")]
    Unclosed { template: String },
    #[error("bad placeholder {{{{{name}}}}} in {template:?}")]
    BadPlaceholder { name: String, template: String },
    #[error("unknown placeholder {{{{{0}}}}}")]
    UnknownPlaceholder(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| TemplateError::Unclosed {
                template: s.to_owned(),
            })?;
            let name = after[..end].trim();
            let ok = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
                });
            if !ok {
                return Err(TemplateError::BadPlaceholder {
                    name: name.to_owned(),
                    template: s.to_owned(),
                });
            }
            parts.push(Part::Name(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Name(n) => Some(n.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Fails on the first placeholder `known` does not accept.
    pub fn check_names(&self, known: &impl Fn(&str) -> bool) -> Result<(), TemplateError> {
        match self.names().find(|n| !known(n)) {
            Some(n) => Err(TemplateError::UnknownPlaceholder(n.to_owned())),
            None => Ok(()),
        }
    }

    pub fn render(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Name(n) => out.push_str(&value(n)),
            }
        }
        out
    }

    /// The text before the first placeholder for which `is_param` holds (other placeholders
    /// rendered with `var`), or `None` when there is no such placeholder.
    pub fn prefix_before(
        &self,
        is_param: impl Fn(&str) -> bool,
        var: impl Fn(&str) -> String,
    ) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Name(n) if is_param(n) => return Some(out),
                Part::Name(n) => out.push_str(&var(n)),
            }
        }
        None
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value stays inside
/// one path segment or query value.
pub fn percent_encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, sluice_http_client::PATH_SEGMENT).to_string()
}

/// Escapes a value for a PromQL or LogQL double-quoted string literal.
pub fn escape_query_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_render() {
        let t = Template::parse("{{a}}/x/{{ b.c }}?q={{a}}").unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), ["a", "b.c", "a"]);
        assert_eq!(t.render(|n| n.to_uppercase()), "A/x/B.C?q=A");
        assert!(Template::parse("{{a").is_err());
        assert!(Template::parse("{{A}}").is_err());
        assert!(Template::parse("{{a b}}").is_err());
        assert_eq!(
            Template::parse("plain").unwrap().render(|_| String::new()),
            "plain"
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(percent_encode_segment("a/b c?%"), "a%2Fb%20c%3F%25");
        assert_eq!(escape_query_string("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
