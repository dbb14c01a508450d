//! Reading secret values: only when a job that lists the secret is about to run, from the
//! source `[secrets]` names. Errors name the secret and its source, never the value.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use crate::config::SecretSource;
use crate::env_vars;

/// A secret's name and value. Its `Debug` shows the name only.
#[derive(Clone)]
pub struct Secret {
    pub name: String,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// The value as an environment variable's value.
    pub fn env_value(&self) -> OsString {
        OsString::from_vec(self.value.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("secret `{name}`: environment variable `{var}` is not set")]
    Unset { name: String, var: String },
    #[error("secret `{name}`: {from} is empty")]
    Empty { name: String, from: String },
    #[error("secret `{name}`: file `{path}` does not exist")]
    NoFile { name: String, path: String },
    #[error("secret `{name}`: cannot read file `{path}`: {error}")]
    Read {
        name: String,
        path: String,
        error: io::Error,
    },
    #[error("secret `{name}`: {from} holds a NUL byte, which no environment variable can")]
    Nul { name: String, from: String },
}

/// Reads secret `name` from `source`; a file is relative to `root` (the pipeline root) and loses
/// one trailing line end, as `echo value > file` adds one.
pub fn resolve(name: &str, source: &SecretSource, root: &Path) -> Result<Secret, Error> {
    let (value, from) = match source {
        SecretSource::Env(var) => {
            let value = env_vars::secret(var).ok_or_else(|| Error::Unset {
                name: name.to_owned(),
                var: var.clone(),
            })?;
            (value.into_vec(), format!("environment variable `{var}`"))
        }
        SecretSource::File(path) => {
            let shown = path.display().to_string();
            let mut value = match std::fs::read(root.join(path)) {
                Ok(value) => value,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::NoFile {
                        name: name.to_owned(),
                        path: shown,
                    });
                }
                Err(error) => {
                    return Err(Error::Read {
                        name: name.to_owned(),
                        path: shown,
                        error,
                    });
                }
            };
            if value.ends_with(b"\n") {
                value.pop();
                if value.ends_with(b"\r") {
                    value.pop();
                }
            }
            (value, format!("file `{shown}`"))
        }
    };
    if value.is_empty() {
        return Err(Error::Empty {
            name: name.to_owned(),
            from,
        });
    }
    if value.contains(&0) {
        return Err(Error::Nul {
            name: name.to_owned(),
            from,
        });
    }
    Ok(Secret {
        name: name.to_owned(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_secret_loses_one_line_end_and_errors_never_show_values() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("token"), "abc\r\n").unwrap();
        std::fs::write(root.path().join("two"), "abc\n\n").unwrap();
        std::fs::write(root.path().join("empty"), "\n").unwrap();
        std::fs::write(root.path().join("nul"), b"ab\0cd").unwrap();
        let file = |p: &str| SecretSource::File(p.into());
        let read = |p: &str| resolve("T", &file(p), root.path());
        assert_eq!(read("token").unwrap().value, b"abc");
        assert_eq!(read("two").unwrap().value, b"abc\n");
        assert_eq!(
            read("empty").unwrap_err().to_string(),
            "secret `T`: file `empty` is empty"
        );
        assert_eq!(
            read("nope").unwrap_err().to_string(),
            "secret `T`: file `nope` does not exist"
        );
        let nul = read("nul").unwrap_err().to_string();
        assert_eq!(
            nul,
            "secret `T`: file `nul` holds a NUL byte, which no environment variable can"
        );
        assert!(!format!("{:?}", read("token").unwrap()).contains("abc"));
    }

    #[test]
    fn an_unset_variable_is_named() {
        let source = SecretSource::Env("WEIR_TEST_SURELY_UNSET_VARIABLE".into());
        assert_eq!(
            resolve("TOKEN", &source, Path::new("/"))
                .unwrap_err()
                .to_string(),
            "secret `TOKEN`: environment variable `WEIR_TEST_SURELY_UNSET_VARIABLE` is not set"
        );
    }
}
