//! Why a request was refused, and where: fit for a 400 body or an `INVALID_ARGUMENT` message.

use std::fmt;

/// What is wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireErrorKind {
    /// A field or length runs past the end of its enclosing message.
    Truncated,
    /// A varint longer than 10 bytes or overflowing 64 bits.
    InvalidVarint,
    /// A field key that is not valid protobuf (field number 0, wire type 6/7, key over 32 bits).
    InvalidKey(u64),
    /// A known field arrived with another wire type than its schema's.
    WireType { expected: &'static str, found: u8 },
    /// A `string` field that is not UTF-8.
    InvalidUtf8,
    /// A trace id or span id of the wrong length.
    IdLength { expected: usize, found: usize },
    /// A packed repeated fixed64/double whose length is not a multiple of 8.
    PackedLength(usize),
    /// Messages (or groups) nested deeper than the walker allows.
    TooDeep,
    /// An end-group marker with no matching start.
    UnexpectedEndGroup,
    /// OTLP/JSON that does not parse (serde's message, which names line and column).
    Json(String),
    /// A protobuf decode error from prost.
    Decode(String),
}

impl fmt::Display for WireErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireErrorKind::Truncated => {
                f.write_str("truncated: data runs past the end of its message")
            }
            WireErrorKind::InvalidVarint => f.write_str("invalid varint"),
            WireErrorKind::InvalidKey(key) => write!(f, "invalid field key {key}"),
            WireErrorKind::WireType { expected, found } => {
                write!(
                    f,
                    "wrong wire type {found} ({}), expected {expected}",
                    wire_name(*found)
                )
            }
            WireErrorKind::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            WireErrorKind::IdLength { expected, found } => {
                write!(f, "id must be {expected} bytes or empty, got {found}")
            }
            WireErrorKind::PackedLength(len) => {
                write!(
                    f,
                    "packed 64-bit values: length {len} is not a multiple of 8"
                )
            }
            WireErrorKind::TooDeep => f.write_str("messages nested too deeply"),
            WireErrorKind::UnexpectedEndGroup => f.write_str("unexpected end-group marker"),
            WireErrorKind::Json(msg) => write!(f, "invalid OTLP/JSON: {msg}"),
            WireErrorKind::Decode(msg) => write!(f, "invalid protobuf: {msg}"),
        }
    }
}

pub(crate) fn wire_name(wire: u8) -> &'static str {
    match wire {
        0 => "varint",
        1 => "64-bit",
        2 => "length-delimited",
        3 => "start-group",
        4 => "end-group",
        5 => "32-bit",
        _ => "invalid",
    }
}

/// One step of the path to the offending field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSegment {
    /// A field known to the schema.
    Field(&'static str),
    /// A field number the schema does not know.
    Unknown(u32),
}

/// A refused request: what is wrong, at which field, at which byte.
///
/// Boxed: the walker returns `Result<_, WireError>` from every message it visits, and a
/// pointer-sized error keeps those results in registers on the success path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(Box<Details>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    kind: WireErrorKind,
    /// Byte offset into the protobuf body; `None` where it would mean nothing to the client
    /// (JSON input, which serde locates by line and column instead).
    offset: Option<usize>,
    /// Root message name first, then field names (innermost last).
    root: &'static str,
    /// Innermost first: pushed while the walker unwinds, so building it costs nothing on the
    /// success path.
    path_rev: Vec<PathSegment>,
}

impl WireError {
    #[cold]
    pub(crate) fn at(kind: WireErrorKind, offset: usize) -> WireError {
        WireError(Box::new(Details {
            kind,
            offset: Some(offset),
            root: "",
            path_rev: Vec::new(),
        }))
    }

    #[cold]
    pub(crate) fn without_position(kind: WireErrorKind) -> WireError {
        WireError(Box::new(Details {
            kind,
            offset: None,
            root: "",
            path_rev: Vec::new(),
        }))
    }

    #[cold]
    pub(crate) fn push(&mut self, segment: PathSegment) {
        self.0.path_rev.push(segment);
    }

    /// Moves the offset of an error found inside a sub-slice that starts at `base`.
    #[cold]
    pub(crate) fn shifted(mut self, base: usize) -> WireError {
        self.0.offset = self.0.offset.map(|o| o + base);
        self
    }

    pub(crate) fn with_root(mut self, root: &'static str) -> WireError {
        self.0.root = root;
        self
    }

    pub(crate) fn clear_offset(mut self) -> WireError {
        self.0.offset = None;
        self
    }

    pub fn kind(&self) -> &WireErrorKind {
        &self.0.kind
    }

    /// Byte offset into the protobuf body where the problem starts.
    pub fn offset(&self) -> Option<usize> {
        self.0.offset
    }

    /// Field path from the request root, e.g. `resource_spans.scope_spans.spans.trace_id`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.0.path_rev.iter().rev() {
            if !out.is_empty() {
                out.push('.');
            }
            match seg {
                PathSegment::Field(name) => out.push_str(name),
                PathSegment::Unknown(n) => {
                    out.push_str("field ");
                    out.push_str(&n.to_string());
                }
            }
        }
        out
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.root.is_empty() {
            f.write_str(self.0.root)?;
        }
        let path = self.path();
        if !path.is_empty() {
            write!(f, ".{path}")?;
        }
        if !self.0.root.is_empty() || !path.is_empty() {
            f.write_str(": ")?;
        }
        write!(f, "{}", self.0.kind)?;
        if let Some(offset) = self.0.offset {
            write!(f, " (at byte {offset})")?;
        }
        Ok(())
    }
}

impl std::error::Error for WireError {}
