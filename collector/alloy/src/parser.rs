//! Recursive-descent parser: a file is a body of statements; a statement is an attribute
//! (`name = expr`) or a block (`a.b.c "label" { body }`). Expressions follow the Alloy syntax
//! reference's precedence: `||`, `&&`, comparisons, `+ -`, `* / %`, `^`, unary `! -`, then
//! postfix access (`.name`, `[index]`, calls).

use crate::Error;
use crate::lexer::{Tok, Token, lex};

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Attr(Attr),
    Block(Block),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub name: String,
    pub pos: usize,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Dotted name parts, e.g. `["otelcol", "receiver", "otlp"]`.
    pub name: Vec<String>,
    pub label: Option<String>,
    pub pos: usize,
    pub body: Vec<Stmt>,
}

impl Block {
    pub fn full_name(&self) -> String {
        self.name.join(".")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Expr>),
    /// Fields in source order, with the position of each key.
    Object(Vec<(String, usize, Expr)>),
    Ident(String),
    Access(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Vec<Expr>),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
}

pub fn parse(text: &str) -> Result<Vec<Stmt>, Error> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        i: 0,
        depth: 0,
    };
    let body = p.body(true)?;
    Ok(body)
}

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    /// Nesting of blocks and expressions, bounded so hostile input cannot exhaust the stack.
    depth: usize,
}

const MAX_DEPTH: usize = 64;

impl Parser {
    fn tok(&self) -> &Tok {
        self.tokens.get(self.i).map(|t| &t.tok).unwrap_or(&Tok::Eof)
    }

    fn pos(&self) -> usize {
        self.tokens
            .get(self.i)
            .or(self.tokens.last())
            .map_or(0, |t| t.pos)
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens.get(self.i).cloned().unwrap_or(Token {
            tok: Tok::Eof,
            pos: self.pos(),
        });
        if self.i < self.tokens.len() {
            self.i += 1;
        }
        t
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::syntax(
                self.pos(),
                format!("nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn skip_newlines(&mut self) {
        while *self.tok() == Tok::Newline {
            self.i += 1;
        }
    }

    fn unexpected(&self, expected: &str) -> Error {
        Error::syntax(
            self.pos(),
            format!("expected {expected}, found {}", self.tok().describe()),
        )
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, Error> {
        if *self.tok() == tok {
            Ok(self.bump())
        } else {
            Err(self.unexpected(what))
        }
    }

    /// Statements up to `}` (or end of file at top level).
    fn body(&mut self, top: bool) -> Result<Vec<Stmt>, Error> {
        let mut out = Vec::new();
        loop {
            self.skip_newlines();
            match self.tok() {
                Tok::Eof if top => return Ok(out),
                Tok::Eof => return Err(self.unexpected("'}' to close the block")),
                Tok::RBrace if !top => return Ok(out),
                Tok::RBrace => return Err(Error::syntax(self.pos(), "unmatched '}'")),
                Tok::Ident(_) => {
                    out.push(self.statement()?);
                    match self.tok() {
                        Tok::Newline | Tok::Eof => {}
                        Tok::RBrace if !top => {}
                        _ => return Err(self.unexpected("end of line after the statement")),
                    }
                }
                _ => {
                    return Err(self.unexpected("an attribute name or a block name"));
                }
            }
        }
    }

    fn ident(&mut self, what: &str) -> Result<(String, usize), Error> {
        match self.tok().clone() {
            Tok::Ident(s) => {
                let pos = self.bump().pos;
                Ok((s, pos))
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn statement(&mut self) -> Result<Stmt, Error> {
        let (first, pos) = self.ident("a name")?;
        if *self.tok() == Tok::Assign {
            self.bump();
            let value = self.expr()?;
            return Ok(Stmt::Attr(Attr {
                name: first,
                pos,
                value,
            }));
        }
        let mut name = vec![first];
        while *self.tok() == Tok::Dot {
            self.bump();
            name.push(self.ident("a name part after '.'")?.0);
        }
        let label = match self.tok().clone() {
            Tok::Str(s) => {
                let at = self.bump().pos;
                if s.is_empty() || !s.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    return Err(Error::syntax(
                        at,
                        format!(
                            "block label {s:?} must be an identifier (letters, digits and '_')"
                        ),
                    ));
                }
                Some(s)
            }
            _ => None,
        };
        if *self.tok() != Tok::LBrace {
            let what = if name.len() == 1 && label.is_none() {
                "'=' (an attribute) or '{' (a block)"
            } else {
                "'{' to open the block"
            };
            return Err(self.unexpected(what));
        }
        self.bump();
        let body = self.nested(|p| p.body(false))?;
        self.expect(Tok::RBrace, "'}'")?;
        Ok(Stmt::Block(Block {
            name,
            label,
            pos,
            body,
        }))
    }

    pub fn expr(&mut self) -> Result<Expr, Error> {
        self.nested(|p| p.binary(0))
    }

    fn binary(&mut self, level: usize) -> Result<Expr, Error> {
        const LEVELS: &[&[&str]] = &[
            &["||"],
            &["&&"],
            &["==", "!=", "<", "<=", ">", ">="],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        let Some(ops) = LEVELS.get(level) else {
            return self.power();
        };
        let mut lhs = self.binary(level + 1)?;
        while let Tok::Op(op) = *self.tok() {
            if !ops.contains(&op) {
                break;
            }
            self.bump();
            self.skip_newlines();
            let rhs = self.binary(level + 1)?;
            lhs = Expr {
                pos: lhs.pos,
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
            };
        }
        Ok(lhs)
    }

    /// `^` is right-associative and binds tighter than `*`.
    fn power(&mut self) -> Result<Expr, Error> {
        let base = self.unary()?;
        if *self.tok() == Tok::Op("^") {
            self.bump();
            let exp = self.nested(|p| p.power())?;
            return Ok(Expr {
                pos: base.pos,
                kind: ExprKind::Binary("^", Box::new(base), Box::new(exp)),
            });
        }
        Ok(base)
    }

    fn unary(&mut self) -> Result<Expr, Error> {
        if let Tok::Op(op @ ("!" | "-")) = *self.tok() {
            let pos = self.bump().pos;
            let inner = self.nested(|p| p.unary())?;
            return Ok(Expr {
                pos,
                kind: ExprKind::Unary(op, Box::new(inner)),
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, Error> {
        let mut e = self.primary()?;
        loop {
            match self.tok() {
                Tok::Dot => {
                    self.bump();
                    let (name, _) = self.ident("a field name after '.'")?;
                    e = Expr {
                        pos: e.pos,
                        kind: ExprKind::Access(Box::new(e), name),
                    };
                }
                Tok::LBracket => {
                    self.bump();
                    self.skip_newlines();
                    let idx = self.expr()?;
                    self.skip_newlines();
                    self.expect(Tok::RBracket, "']'")?;
                    e = Expr {
                        pos: e.pos,
                        kind: ExprKind::Index(Box::new(e), Box::new(idx)),
                    };
                }
                Tok::LParen => {
                    self.bump();
                    let args = self.list(Tok::RParen, "')'", |p| p.expr())?;
                    e = Expr {
                        pos: e.pos,
                        kind: ExprKind::Call(Box::new(e), args),
                    };
                }
                _ => return Ok(e),
            }
        }
    }

    /// Comma-separated items up to `close`; newlines are free, a trailing comma is allowed.
    fn list<T>(
        &mut self,
        close: Tok,
        close_text: &str,
        mut item: impl FnMut(&mut Self) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        loop {
            self.skip_newlines();
            if *self.tok() == close {
                self.bump();
                return Ok(out);
            }
            out.push(item(self)?);
            self.skip_newlines();
            if *self.tok() == Tok::Comma {
                self.bump();
            } else if *self.tok() != close {
                return Err(self.unexpected(&format!("',' or {close_text}")));
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, Error> {
        let pos = self.pos();
        let kind =
            match self.tok().clone() {
                Tok::Str(s) => {
                    self.bump();
                    ExprKind::Str(s)
                }
                Tok::Number(n) => {
                    self.bump();
                    if let Ok(i) = n.parse::<i64>() {
                        ExprKind::Int(i)
                    } else {
                        ExprKind::Float(n.parse::<f64>().map_err(|_| {
                            Error::syntax(pos, format!("number {n} is out of range"))
                        })?)
                    }
                }
                Tok::Ident(s) => {
                    self.bump();
                    match s.as_str() {
                        "true" => ExprKind::Bool(true),
                        "false" => ExprKind::Bool(false),
                        "null" => ExprKind::Null,
                        _ => ExprKind::Ident(s),
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    ExprKind::Array(self.list(Tok::RBracket, "']'", |p| p.expr())?)
                }
                Tok::LBrace => {
                    self.bump();
                    ExprKind::Object(self.list(Tok::RBrace, "'}'", |p| {
                        let (key, at) = match p.tok().clone() {
                            Tok::Ident(k) => (k, p.bump().pos),
                            Tok::Str(k) => (k, p.bump().pos),
                            _ => return Err(p.unexpected("an object key (a name or a string)")),
                        };
                        if *p.tok() != Tok::Assign {
                            return Err(p.unexpected("'=' after the object key"));
                        }
                        p.bump();
                        Ok((key, at, p.expr()?))
                    })?)
                }
                Tok::LParen => {
                    self.bump();
                    self.skip_newlines();
                    let e = self.expr()?;
                    self.skip_newlines();
                    self.expect(Tok::RParen, "')'")?;
                    return Ok(e);
                }
                _ => return Err(self.unexpected("a value")),
            };
        Ok(Expr { kind, pos })
    }
}
