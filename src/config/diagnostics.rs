//! Configuration problems with the file and line they come from.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found while loading, reported together.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A TOML file's text, for turning key paths and byte offsets into line numbers.
pub struct TomlSource<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    table: Option<toml::Spanned<DeTable<'a>>>,
}

impl<'a> TomlSource<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        TomlSource {
            path,
            text,
            table: DeTable::parse(text).ok(),
        }
    }

    pub fn line_of_offset(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    /// Line of the key at a dotted path such as `source.pagination.type` or `units.2.id`;
    /// falls back to the nearest existing parent.
    pub fn line_of(&self, dotted: &str) -> Option<usize> {
        let table = self.table.as_ref()?;
        let mut best = None;
        let mut current: Option<&DeValue<'_>> = None;
        let mut root: Option<&DeTable<'_>> = Some(table.get_ref());
        for part in dotted.split('.').filter(|p| !p.is_empty()) {
            let next = match (root, current) {
                (Some(t), _) => t.iter().find(|(k, _)| k.get_ref() == part).map(|(k, v)| {
                    best = Some(k.span().start);
                    v.get_ref()
                }),
                (None, Some(DeValue::Array(items))) => part
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(|v| {
                        best = Some(v.span().start);
                        v.get_ref()
                    }),
                _ => None,
            };
            let Some(value) = next else { break };
            current = Some(value);
            root = match value {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best.map(|offset| self.line_of_offset(offset))
    }

    pub fn problem(&self, key: Option<&str>, message: impl Into<String>) -> Problem {
        Problem {
            file: self.path.to_path_buf(),
            line: key.and_then(|k| self.line_of(k)),
            message: message.into(),
        }
    }

    /// A `toml` deserialization error, with its line.
    pub fn toml_problem(&self, error: &toml::de::Error) -> Problem {
        Problem {
            file: self.path.to_path_buf(),
            line: error.span().map(|s| self.line_of_offset(s.start)),
            message: error.message().trim().to_string(),
        }
    }

    /// Deserializes `T`, collecting every unknown key as a problem instead of stopping at the
    /// first one.
    pub fn deserialize<T: serde::de::DeserializeOwned>(
        &self,
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        let deserializer = match toml::Deserializer::parse(self.text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(self.toml_problem(&e));
                return None;
            }
        };
        let mut unknown = Vec::new();
        let result =
            serde_ignored::deserialize(deserializer, |path| unknown.push(clean_path(&path)));
        for key in unknown {
            problems.push(self.problem(Some(&key), format!("unknown key `{key}`")));
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(self.toml_problem(&e));
                None
            }
        }
    }
}

/// `path` relative to the folder of `file`, unless absolute.
pub fn resolve(file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(path)
    }
}

/// serde_ignored writes `?` for each `Option` level; the TOML path has none.
pub fn clean_path(path: &serde_ignored::Path<'_>) -> String {
    path.to_string()
        .split('.')
        .filter(|p| *p != "?")
        .collect::<Vec<_>>()
        .join(".")
}
