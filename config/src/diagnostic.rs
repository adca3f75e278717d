//! Errors that point at the file, line, column and key an operator has to fix.
//!
//! Validation works on typed values and only knows *which key* is wrong (a [`KeyPath`]); the
//! [`Locator`] then finds where that key is in the source text, so the rules never deal with
//! byte offsets and the messages always carry a position.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step into the document: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value lives in the document, e.g. `sites[0].peers[1].address`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a table key.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path extended by an array index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Builds a path from the one `serde_ignored` reports for a key nobody consumed.
    pub(crate) fn from_ignored(path: &serde_ignored::Path<'_>) -> Self {
        fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
            use serde_ignored::Path as P;
            match path {
                P::Root => {}
                P::Seq { parent, index } => {
                    walk(parent, out);
                    out.push(Segment::Index(*index));
                }
                P::Map { parent, key } => {
                    walk(parent, out);
                    out.push(Segment::Key(key.clone()));
                }
                P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                    walk(parent, out)
                }
            }
        }
        let mut segments = Vec::new();
        walk(path, &mut segments);
        Self(segments)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One problem in a deployment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    pub key: KeyPath,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

/// Every problem found in a deployment file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "error: {diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A rule violation found by validation, before it is given a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: KeyPath,
    pub message: String,
}

/// Collects findings while the rules run.
#[derive(Debug, Default)]
pub struct Findings(Vec<Finding>);

impl Findings {
    pub fn push(&mut self, key: KeyPath, message: impl Into<String>) {
        self.0.push(Finding {
            key,
            message: message.into(),
        });
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.0
    }
}

/// Maps key paths and byte offsets of one source text to lines and columns.
pub struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    root: Option<&'a Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub fn new(file: &'a Path, text: &'a str, root: Option<&'a Spanned<DeTable<'a>>>) -> Self {
        Self { file, text, root }
    }

    /// A diagnostic at a byte range; the key path is recovered from the document when it can be.
    pub fn at_span(&self, span: Option<Range<usize>>, message: String) -> Diagnostic {
        let span = span.unwrap_or(0..0);
        let key = self.path_of_span(&span);
        self.diagnostic(span.start, key, message)
    }

    /// A diagnostic at the key a validation rule named. When the key itself is absent (a missing
    /// field), the nearest enclosing table that exists is pointed at.
    pub fn at_key(&self, key: KeyPath, message: String) -> Diagnostic {
        let offset = self.span_of_key(&key).map_or(0, |span| span.start);
        self.diagnostic(offset, key, message)
    }

    fn diagnostic(&self, offset: usize, key: KeyPath, message: String) -> Diagnostic {
        let (line, column) = line_column(self.text, offset);
        Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }

    /// The span of the key (for table entries) or value (for array items) at `path`, or of its
    /// deepest existing ancestor.
    fn span_of_key(&self, path: &KeyPath) -> Option<Range<usize>> {
        let root = self.root?;
        let mut best = root.span();
        let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
        let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
        for segment in path.segments() {
            let value = match (segment, table, array) {
                (Segment::Key(key), Some(t), _) => match t.get_key_value(key.as_str()) {
                    Some((k, v)) => {
                        best = k.span();
                        v
                    }
                    None => break,
                },
                (Segment::Index(i), _, Some(items)) => match items.get(*i) {
                    Some(v) => {
                        best = v.span();
                        v
                    }
                    None => break,
                },
                _ => break,
            };
            table = value.get_ref().as_table();
            array = value.get_ref().as_array().map(|a| a.as_ref());
        }
        Some(best)
    }

    /// The key path of the smallest value (or key) enclosing `span`, so that type errors reported
    /// by the parser with only a position also name the key. The whole tree is searched because
    /// the span of an array-of-tables item covers only its `[[header]]`, not its body.
    fn path_of_span(&self, span: &Range<usize>) -> KeyPath {
        fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
            outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
        }
        fn visit(
            value: &Spanned<DeValue<'_>>,
            path: KeyPath,
            span: &Range<usize>,
            best: &mut Option<(usize, KeyPath)>,
        ) {
            let own = value.span();
            if contains(&own, span) && best.as_ref().is_none_or(|(len, _)| own.len() < *len) {
                *best = Some((own.len(), path.clone()));
            }
            if let Some(table) = value.get_ref().as_table() {
                for (key, v) in table.iter() {
                    let child = path.key(key.get_ref());
                    let kspan = key.span();
                    if contains(&kspan, span)
                        && best.as_ref().is_none_or(|(len, _)| kspan.len() < *len)
                    {
                        *best = Some((kspan.len(), child.clone()));
                    }
                    visit(v, child, span, best);
                }
            } else if let Some(items) = value.get_ref().as_array() {
                for (i, v) in items.iter().enumerate() {
                    visit(v, path.index(i), span, best);
                }
            }
        }
        let mut best = None;
        if let Some(root) = self.root {
            let root = Spanned::new(0..0, DeValue::Table(root.get_ref().clone()));
            visit(&root, KeyPath::root(), span, &mut best);
        }
        best.map(|(_, path)| path).unwrap_or_default()
    }
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_read_like_toml() {
        let path = KeyPath::root().key("sites").index(0).key("peers").index(2);
        assert_eq!(path.key("address").to_string(), "sites[0].peers[2].address");
        assert_eq!(KeyPath::root().to_string(), "(top level)");
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        let x = text.find('"').unwrap();
        assert_eq!(line_column(text, x), (2, 6));
        assert_eq!(line_column(text, 10_000), (3, 1));
    }

    #[test]
    fn locator_finds_nested_keys_and_array_items() {
        let text = "[[sites]]\nname = \"a\"\n[[sites]]\nname = \"b\"\nasn = 5\n";
        let root = DeTable::parse(text).unwrap();
        let locator = Locator::new(Path::new("d.toml"), text, Some(&root));
        let d = locator.at_key(
            KeyPath::root().key("sites").index(1).key("asn"),
            "bad".into(),
        );
        assert_eq!((d.line, d.column), (5, 1));
        // A missing key points at the header of its table.
        let d = locator.at_key(
            KeyPath::root().key("sites").index(1).key("router_id"),
            "missing".into(),
        );
        assert_eq!(d.line, 3);
    }

    #[test]
    fn locator_recovers_the_key_of_a_span() {
        let text = "[dns]\nlisten = [\"x\", \"y\"]\n";
        let root = DeTable::parse(text).unwrap();
        let locator = Locator::new(Path::new("d.toml"), text, Some(&root));
        let y = text.find("\"y\"").unwrap();
        let d = locator.at_span(Some(y..y + 3), "bad".into());
        assert_eq!(d.key.to_string(), "dns.listen[1]");
        assert_eq!((d.line, d.column), (2, 16));
    }
}
