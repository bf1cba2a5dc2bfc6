//! YAML loading with positions: every error names the line and column of the offending value.
//!
//! `marked-yaml` keeps a span on every node, so errors found after deserialization (an unknown
//! backend, a bad regex) are mapped back to a position by walking the node tree along the
//! field path; its serde integration (with `serde_path_to_error`) reports the path and span of
//! type errors and unknown fields.

use super::ConfigError;
use marked_yaml::{LoaderOptions, Node};
use serde::de::DeserializeOwned;
use std::path::Path;

/// A parsed document and the file it came from.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    pub(crate) file: &'a Path,
    pub(crate) root: Node,
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

impl<'a> Document<'a> {
    /// Parses `text` (from `file`) into a node tree.
    pub(crate) fn parse(file: &'a Path, text: &str) -> Result<Self, ConfigError> {
        if let Some(line) = second_document(text) {
            return Err(ConfigError {
                file: file.to_owned(),
                line,
                column: 1,
                path: String::new(),
                message: "a config file holds one YAML document; another one starts here"
                    .to_owned(),
            });
        }
        let options = LoaderOptions::default().error_on_duplicate_keys(true);
        match marked_yaml::parse_yaml_with_options(0, text, options) {
            Ok(root) => Ok(Self { file, root }),
            Err(e) => {
                let (line, column, message) = load_error(&e);
                // A duplicate key is located at the key itself: its own line names it.
                let near = match e {
                    marked_yaml::LoadError::DuplicateKey(_) => usize::MAX,
                    _ => column,
                };
                Err(ConfigError {
                    file: file.to_owned(),
                    line,
                    column,
                    path: path_near(text, line, near),
                    message,
                })
            }
        }
    }

    /// An error at `path` (rendered like `routes[0].rules[1].backendRefs[0].name`), located at
    /// the deepest node of the path that exists.
    pub(crate) fn error_at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = locate(&self.root, &parse_path(path));
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// The node at `path`, if present.
    pub(crate) fn node(&self, path: &str) -> Option<&Node> {
        walk(&self.root, &parse_path(path))
            .filter(|(_, complete)| *complete)
            .map(|(n, _)| n)
    }

    /// Deserializes the node at `path` (which must exist) into `T`, with errors located.
    pub(crate) fn deserialize<T: DeserializeOwned>(&self, path: &str) -> Result<T, ConfigError> {
        let node = self
            .node(path)
            .ok_or_else(|| self.error_at(path, "missing field"))?;
        marked_yaml::from_node::<T>(node).map_err(|e| {
            let inner_path = e.path().unwrap_or("").trim_start_matches('.').to_owned();
            let full = join(path, &inner_path);
            let mark = e.start_mark();
            let message = describe(&e);
            match mark {
                Some(m) => {
                    // A mark on a block mapping is its first key's `:`: the mapping's start
                    // instead (see `start_of`).
                    let at = walk(&self.root, &parse_path(&full))
                        .filter(|(n, complete)| *complete && n.span().start() == Some(&m))
                        .and_then(|(n, _)| start_of(n))
                        .unwrap_or((m.line(), m.column()));
                    ConfigError {
                        file: self.file.to_owned(),
                        line: at.0,
                        column: at.1,
                        path: full,
                        message,
                    }
                }
                None => self.error_at(&full, message),
            }
        })
    }
}

/// The field path of the block-style key under which the text at `line`:`column` (1-based)
/// sits, read from indentation alone (the loader gives none when the text does not parse):
/// the keys of the lines before it and their list items, like `routes[0].rules[1].filters`.
/// Flow collections (`[...]`, `{...}`) are not entered, so inside one the path names the key
/// that holds it. Empty at the top level.
fn path_near(text: &str, line: usize, column: usize) -> String {
    /// A key (with how many list items it has had) or a list item, at its column.
    enum Frame {
        Key {
            at: usize,
            name: String,
            items: usize,
        },
        Item {
            at: usize,
            index: usize,
        },
    }
    let at = |f: &Frame| match f {
        Frame::Key { at, .. } | Frame::Item { at, .. } => *at,
    };
    let mut frames: Vec<Frame> = Vec::new();
    for (i, raw) in text.lines().enumerate().take(line) {
        let mut col = raw.len() - raw.trim_start_matches(' ').len();
        let mut rest = &raw[col..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        // The error's own line counts only when the error lies in its value (`timeouts: {
        // request: [1s }`): the loader often notices a construct left open above (an
        // unclosed `[`) only at the next key, which is not where the problem is.
        if i + 1 == line {
            let value_from = rest.trim_start_matches("- ").split_once(':').map(|(k, _)| {
                col + (rest.len() - rest.trim_start_matches("- ").len()) + k.len() + 2
            });
            if value_from.is_none_or(|from| column < from) {
                continue;
            }
        }
        // List items: `- ` opens an item of the sequence held by the key above it (at the
        // same column or to its left); what follows sits two columns further in.
        while rest == "-" || rest.starts_with("- ") {
            while frames
                .last()
                .is_some_and(|f| at(f) > col || matches!(f, Frame::Item { at, .. } if *at == col))
            {
                frames.pop();
            }
            let index = match frames.last_mut() {
                Some(Frame::Key { items, .. }) => {
                    *items += 1;
                    *items - 1
                }
                _ => 0,
            };
            frames.push(Frame::Item { at: col, index });
            let skipped = rest.len() - rest[1..].trim_start_matches(' ').len();
            col += skipped;
            rest = &rest[skipped..];
        }
        let key = match rest.split_once(':') {
            Some((k, _)) if !k.is_empty() && !k.starts_with(['[', '{', '"', '\'']) => k.trim_end(),
            _ => continue,
        };
        while frames.last().is_some_and(|f| at(f) >= col) {
            frames.pop();
        }
        frames.push(Frame::Key {
            at: col,
            name: key.to_owned(),
            items: 0,
        });
    }
    let mut path = String::new();
    for f in &frames {
        match f {
            Frame::Key { name, .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(name);
            }
            Frame::Item { index, .. } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The line (1-based) where a second YAML document starts: a `---` marker after content, or
/// content after a `...` end marker. The YAML loader reads only the first document and would
/// drop the rest without a word.
fn second_document(text: &str) -> Option<usize> {
    let is_marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    };
    let (mut content, mut ended) = (false, false);
    for (i, line) in text.lines().enumerate() {
        if is_marker(line, "---") {
            if content {
                return Some(i + 1);
            }
            continue;
        }
        if is_marker(line, "...") {
            ended = true;
            continue;
        }
        let t = line.trim_start();
        if !t.is_empty() && !t.starts_with('#') && !t.starts_with('%') {
            if ended {
                return Some(i + 1);
            }
            content = true;
        }
    }
    None
}

/// Joins a base path and a relative one.
pub(crate) fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_owned(),
        (_, true) => base.to_owned(),
        _ if rel.starts_with('[') => format!("{base}{rel}"),
        _ => format!("{base}.{rel}"),
    }
}

fn describe(e: &marked_yaml::FromNodeError) -> String {
    use marked_yaml::Error as E;
    match &**e {
        E::UnknownFieldError(field, expected, _) => {
            if expected.is_empty() {
                format!("unknown field `{field}`")
            } else {
                format!(
                    "unknown field `{field}`, expected one of {}",
                    expected
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
        E::NotBoolean(_) => "expected a boolean".to_owned(),
        E::IntegerParseFailure(err, _) => format!("invalid integer: {err}"),
        E::FloatParseFailure(err, _) => format!("invalid number: {err}"),
        E::Other(msg, _) => msg.clone(),
    }
}

fn load_error(e: &marked_yaml::LoadError) -> (usize, usize, String) {
    use marked_yaml::LoadError as L;
    match e {
        L::TopLevelMustBeMapping(m) => (
            m.line(),
            m.column(),
            "the document must be a mapping".into(),
        ),
        L::TopLevelMustBeSequence(m) => (m.line(), m.column(), "unexpected sequence".into()),
        L::UnexpectedAnchor(m) => (
            m.line(),
            m.column(),
            "YAML anchors are not supported".into(),
        ),
        L::MappingKeyMustBeScalar(m) => {
            (m.line(), m.column(), "mapping keys must be scalars".into())
        }
        L::UnexpectedTag(m) => (m.line(), m.column(), "YAML tags are not supported".into()),
        L::ScanError(m, err) => (m.line(), m.column(), format!("invalid YAML: {err}")),
        L::DuplicateKey(inner) => {
            let m = inner.key.span().start().copied();
            let (line, column) = m.map(|m| (m.line(), m.column())).unwrap_or((0, 0));
            (
                line,
                column,
                format!("duplicate key `{}`", inner.key.as_str()),
            )
        }
    }
}

/// Parses `a.b[0].c` into segments.
pub(crate) fn parse_path(path: &str) -> Vec<Segment> {
    let mut out = vec![];
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key.to_owned()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                out.push(Segment::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

/// Walks `path` from `root`, returning the deepest node reached and whether it is the whole path.
fn walk<'n>(root: &'n Node, path: &[Segment]) -> Option<(&'n Node, bool)> {
    let mut node = root;
    for seg in path {
        let next = match (seg, node) {
            (Segment::Key(k), Node::Mapping(m)) => m.get(k.as_str()),
            (Segment::Index(i), Node::Sequence(s)) => s.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return Some((node, false)),
        }
    }
    Some((node, true))
}

fn locate(root: &Node, path: &[Segment]) -> (usize, usize) {
    walk(root, path)
        .and_then(|(n, _)| start_of(n))
        .unwrap_or((0, 0))
}

/// Where `node` starts (line, column). `marked-yaml` starts a block mapping at the `:` after
/// its first key; the mapping's value starts at that key.
fn start_of(node: &Node) -> Option<(usize, usize)> {
    let own = node.span().start().map(|m| (m.line(), m.column()));
    match node {
        Node::Mapping(map) => map
            .keys()
            .filter_map(|k| k.span().start())
            .map(|m| (m.line(), m.column()))
            .chain(own)
            .min(),
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("routes[0].rules[12].name"),
            vec![
                Segment::Key("routes".into()),
                Segment::Index(0),
                Segment::Key("rules".into()),
                Segment::Index(12),
                Segment::Key("name".into()),
            ]
        );
        assert_eq!(join("routes[0]", "rules[1].x"), "routes[0].rules[1].x");
        assert_eq!(join("backends", "[2]"), "backends[2]");
    }

    #[test]
    fn locates_values() {
        let file = Path::new("t.yaml");
        let doc = Document::parse(file, "a:\n  b:\n    - x: 1\n    - x: 2\n").unwrap();
        let e = doc.error_at("a.b[1].x", "bad");
        assert_eq!((e.line, e.column), (4, 10));
        assert_eq!(e.to_string(), "t.yaml:4:10: a.b[1].x: bad");
    }

    #[test]
    fn a_block_mapping_starts_at_its_first_key() {
        let file = Path::new("t.yaml");
        let text = "backends:\n  - name: web\n    protocol: http1\nserver: { a: 1 }\n";
        let doc = Document::parse(file, text).unwrap();
        let e = doc.error_at("backends[0]", "bad");
        assert_eq!((e.line, e.column), (2, 5), "at `name`, not at its `:`");
        let e = doc.error_at("server", "bad");
        assert_eq!((e.line, e.column), (4, 9), "a flow mapping at its `{{`");
    }
}
