//! Loading: the file, the `SPLATFLEET__SECTION__KEY` environment overrides laid over it, the
//! strict type check, then each section's validation; every failure is a [`ConfigError`]
//! naming the key.

use std::path::{Path, PathBuf};

use super::Config;

/// Environment variables starting with this and `__` override file keys.
pub const ENV_PREFIX: &str = "SPLATFLEET";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist (pass --config PATH or set SPLATFLEET_CONFIG)")]
    Missing { path: PathBuf },
    #[error("config file {path} could not be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl Config {
    /// Reads `path`, applies `SPLATFLEET__SECTION__KEY` variables from the process
    /// environment, and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, so tests need not touch the
    /// process's own.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing {
                    path: path.to_owned(),
                })
            }
            Err(source) => {
                return Err(ConfigError::Unreadable {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::from_toml_with_env(&text, path, env)
    }

    /// Parses TOML text (named `origin` in errors) with environment overrides.
    pub fn from_toml_with_env(
        text: &str,
        origin: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // Parse once ourselves so a syntax error is reported as such, with its line.
        let table = text
            .parse::<toml::Table>()
            .map_err(|err| ConfigError::Syntax {
                path: origin.to_owned(),
                message: err.to_string(),
            })?;
        let prefix = format!("{ENV_PREFIX}__");
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .collect();
        check_types_strictly(table, &overrides)?;
        let layered = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|err| ConfigError::Syntax {
                path: origin.to_owned(),
                message: err.to_string(),
            })?;
        let config: Config = serde_path_to_error::deserialize(layered).map_err(|err| {
            let key = err.path().to_string();
            ConfigError::Invalid {
                key: if key == "." { "<root>".into() } else { key },
                problem: clean_problem(&err.inner().to_string()),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Each section's checks, in a fixed order: the first failure is reported.
    fn validate(&self) -> Result<(), ConfigError> {
        self.broker.validate()?;
        self.database.validate()?;
        self.wallet.validate()?;
        self.discovery.validate()?;
        self.dendrite.validate()?;
        self.puller.validate()?;
        self.worker.validate()?;
        self.submitter.validate()?;
        self.object_store.validate()?;
        self.log.validate()
    }
}

/// serde's messages mention Rust types; keep the part an operator needs.
/// The `config` crate appends its own " for key `...`"; the key is already ours to name.
/// Deserializes the file, with the environment's overrides laid over it, straight from TOML
/// values, which convert nothing: the layered `config` crate below would round `2.5` into an
/// integer key and read `true` or `"yes"` as 1, so a wrong type would pass unnoticed. An
/// override is taken as the TOML value it spells (`5`, `2.5`, `true`) and, when its key wants
/// text (a password of digits), as the string itself.
fn check_types_strictly(
    file: toml::Table,
    overrides: &config::Map<String, String>,
) -> Result<(), ConfigError> {
    // (path in the config, the override's value)
    let overrides: Vec<(Vec<String>, &String)> = overrides
        .iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?.strip_prefix("__")?;
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            Some((path, value))
        })
        .collect();
    let mut as_text = vec![false; overrides.len()];
    loop {
        let mut merged = file.clone();
        for ((path, value), text) in overrides.iter().zip(&as_text) {
            let typed = if *text {
                toml::Value::String((*value).clone())
            } else {
                format!("v = {value}")
                    .parse::<toml::Table>()
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| toml::Value::String((*value).clone()))
            };
            insert_at(&mut merged, path, typed);
        }
        let Err(err) = serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(merged))
        else {
            return Ok(());
        };
        let key = err.path().to_string();
        let retry = overrides
            .iter()
            .zip(as_text.iter_mut())
            .find(|((path, _), text)| !**text && path.join(".") == key);
        match retry {
            Some((_, text)) => *text = true,
            None => {
                return Err(ConfigError::Invalid {
                    key: if key == "." { "<root>".into() } else { key },
                    problem: clean_problem(&err.inner().to_string()),
                })
            }
        }
    }
}

/// Sets `table[path[0]][path[1]]… = value`, creating tables on the way (a non-table in the way
/// is replaced, as the override replaces it).
fn insert_at(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for name in parents {
        let entry = current
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

fn clean_problem(message: &str) -> String {
    let message = message.split(" for key `").next().unwrap_or(message);
    message.replace("invalid type: ", "wrong type: ")
}
