//! Tokens of the Alloy configuration syntax: identifiers, strings (quoted with escapes, and
//! backtick raw strings), numbers, punctuation and operators. Comments are `//`, `/* */` and,
//! as `configs/alloy-config.river` uses them, `#` to the end of the line. Newlines are tokens because a
//! statement ends at one.

use crate::Error;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    /// Source text of a number; parsed by the parser.
    Number(String),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Dot,
    Assign,
    Colon,
    Op(&'static str),
    Newline,
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Str(_) => "a string".into(),
            Tok::Number(n) => format!("number {n}"),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Dot => "'.'".into(),
            Tok::Assign => "'='".into(),
            Tok::Colon => "':'".into(),
            Tok::Op(o) => format!("'{o}'"),
            Tok::Newline => "end of line".into(),
            Tok::Eof => "end of file".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// Byte offset of the token's first character.
    pub pos: usize,
}

pub fn lex(text: &str) -> Result<Vec<Token>, Error> {
    let mut lx = Lexer {
        src: text,
        bytes: text.as_bytes(),
        i: 0,
        out: Vec::new(),
    };
    lx.run()?;
    Ok(lx.out)
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    i: usize,
    out: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.i + ahead).copied()
    }

    fn push(&mut self, tok: Tok, pos: usize) {
        self.out.push(Token { tok, pos });
    }

    fn run(&mut self) -> Result<(), Error> {
        while let Some(c) = self.peek(0) {
            let start = self.i;
            match c {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'\n' => {
                    self.push(Tok::Newline, start);
                    self.i += 1;
                }
                b'#' => self.skip_line(),
                b'/' if self.peek(1) == Some(b'/') => self.skip_line(),
                b'/' if self.peek(1) == Some(b'*') => {
                    let end = self.src[start + 2..].find("*/").ok_or_else(|| {
                        Error::syntax(start, "unterminated /* comment (no closing */)")
                    })?;
                    // A block comment spanning lines ends the statement like a newline would.
                    if self.src[start..start + 2 + end].contains('\n') {
                        self.push(Tok::Newline, start);
                    }
                    self.i = start + 2 + end + 2;
                }
                b'"' => {
                    let s = self.string()?;
                    self.push(Tok::Str(s), start);
                }
                b'`' => {
                    let end = self.src[start + 1..].find('`').ok_or_else(|| {
                        Error::syntax(start, "unterminated raw string (no closing `)")
                    })?;
                    let s = self.src[start + 1..start + 1 + end].to_string();
                    self.i = start + 1 + end + 1;
                    self.push(Tok::Str(s), start);
                }
                b'0'..=b'9' => {
                    let n = self.number()?;
                    self.push(Tok::Number(n), start);
                }
                b'{' => self.single(Tok::LBrace),
                b'}' => self.single(Tok::RBrace),
                b'[' => self.single(Tok::LBracket),
                b']' => self.single(Tok::RBracket),
                b'(' => self.single(Tok::LParen),
                b')' => self.single(Tok::RParen),
                b',' => self.single(Tok::Comma),
                b'.' => self.single(Tok::Dot),
                b':' => self.single(Tok::Colon),
                _ => {
                    let ch = self.src[start..].chars().next().unwrap_or('\0');
                    if ch.is_alphabetic() || ch == '_' {
                        let end = self.src[start..]
                            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .map_or(self.src.len(), |n| start + n);
                        self.i = end;
                        self.push(Tok::Ident(self.src[start..end].to_string()), start);
                    } else if let Some(op) = self.operator() {
                        self.i += op.len();
                        let tok = if op == "=" { Tok::Assign } else { Tok::Op(op) };
                        self.push(tok, start);
                    } else {
                        return Err(Error::syntax(start, format!("unexpected character {ch:?}")));
                    }
                }
            }
        }
        self.push(Tok::Eof, self.bytes.len());
        Ok(())
    }

    fn single(&mut self, tok: Tok) {
        let pos = self.i;
        self.i += 1;
        self.push(tok, pos);
    }

    fn skip_line(&mut self) {
        self.i = self.src[self.i..]
            .find('\n')
            .map_or(self.bytes.len(), |n| self.i + n);
    }

    fn operator(&self) -> Option<&'static str> {
        const OPS: &[&str] = &[
            "==", "!=", "<=", ">=", "&&", "||", "=", "<", ">", "+", "-", "*", "/", "%", "^", "!",
        ];
        let rest = &self.src[self.i..];
        OPS.iter().find(|op| rest.starts_with(**op)).copied()
    }

    fn number(&mut self) -> Result<String, Error> {
        let start = self.i;
        let digits = |lx: &mut Self| {
            while lx.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                lx.i += 1;
            }
        };
        digits(self);
        if self.peek(0) == Some(b'.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
            digits(self);
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(0), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                return Err(Error::syntax(
                    start,
                    "malformed number: exponent has no digits",
                ));
            }
            digits(self);
        }
        if self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        {
            return Err(Error::syntax(
                start,
                "malformed number (a duration or size is a string in Alloy, e.g. \"5s\")",
            ));
        }
        Ok(self.src[start..self.i].to_string())
    }

    /// A double-quoted string with Go-style escapes.
    fn string(&mut self) -> Result<String, Error> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.src[self.i..].chars().next() else {
                return Err(Error::syntax(start, "unterminated string (no closing \")"));
            };
            match c {
                '"' => {
                    self.i += 1;
                    return Ok(out);
                }
                '\n' => {
                    return Err(Error::syntax(
                        start,
                        "unterminated string: a newline inside \"...\" (use \\n, or a `raw string`)",
                    ));
                }
                '\\' => {
                    let esc_pos = self.i;
                    self.i += 1;
                    let Some(e) = self.src[self.i..].chars().next() else {
                        return Err(Error::syntax(start, "unterminated string (no closing \")"));
                    };
                    self.i += e.len_utf8();
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        '\'' => out.push('\''),
                        'x' => out.push(self.hex_escape(esc_pos, 2)?),
                        'u' => out.push(self.hex_escape(esc_pos, 4)?),
                        'U' => out.push(self.hex_escape(esc_pos, 8)?),
                        other => {
                            return Err(Error::syntax(
                                esc_pos,
                                format!("unknown escape sequence \\{other} in string"),
                            ));
                        }
                    }
                }
                _ => {
                    out.push(c);
                    self.i += c.len_utf8();
                }
            }
        }
    }

    fn hex_escape(&mut self, pos: usize, n: usize) -> Result<char, Error> {
        let digits = self.src.get(self.i..self.i + n).unwrap_or("");
        let code = (digits.len() == n && digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(digits, 16).ok())
            .flatten()
            .ok_or_else(|| Error::syntax(pos, format!("escape sequence needs {n} hex digits")))?;
        self.i += n;
        char::from_u32(code).ok_or_else(|| {
            Error::syntax(
                pos,
                format!("escape sequence is not a valid character (U+{code:X})"),
            )
        })
    }
}
