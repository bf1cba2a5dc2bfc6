use std::{borrow::Cow, fmt};

/// One step of a [`FieldPath`]: a field name or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A field, spelled as in the config file (`backendRefs`, `requestHeaderModifier`).
    Field(Cow<'static, str>),
    /// A position in a list.
    Index(usize),
}

/// Where a config value lives, from the top of the config file: displayed as
/// `routes[0].rules[1].backendRefs[0].name`.
///
/// Applications that parse YAML with a span-aware crate walk these segments to find the line and
/// column of the offending value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<PathSegment>);

/// A config value that cannot be used, with the field path that names it.
///
/// Every problem in a route table is reported (not only the first), each as one `ConfigError`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    path: FieldPath,
    message: String,
}

// === impl FieldPath ===

impl FieldPath {
    /// The empty path (the top of the file).
    pub const fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a field name.
    #[must_use]
    pub fn field(&self, name: impl Into<Cow<'static, str>>) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Field(name.into()));
        Self(segments)
    }

    /// This path extended by a list index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Index(index));
        Self(segments)
    }

    /// The segments from the top of the file down.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in &self.0 {
            match segment {
                PathSegment::Field(name) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                PathSegment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

// === impl ConfigError ===

impl ConfigError {
    /// An error about the value at `path`.
    pub fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }

    /// The field path of the offending value.
    pub fn path(&self) -> &FieldPath {
        &self.path
    }

    /// What is wrong with it (lowercase, no trailing period).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_displays_like_the_config_file() {
        let p = FieldPath::root()
            .field("routes")
            .index(0)
            .field("rules")
            .index(1)
            .field("backendRefs")
            .index(0)
            .field("name");
        assert_eq!(
            p.to_string(),
            "routes[0].rules[1].backendRefs[0].name",
            "dotted fields, bracketed indices"
        );
        let e = ConfigError::new(p, "unknown backend");
        assert_eq!(
            e.to_string(),
            "routes[0].rules[1].backendRefs[0].name: unknown backend",
            "display is path then message"
        );
    }
}
