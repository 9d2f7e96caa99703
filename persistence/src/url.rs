//! Database URLs: which backend, and how to print one without its password.
//!
//! - `mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTIONS]` (also `mariadb://`): MySQL or
//!   MariaDB. The database is created on first use if the user may create it.
//! - `sqlite:PATH` or `sqlite://PATH`: an embedded SQLite file (created if missing). A node
//!   without a URL uses `DATA_DIR/kuku.sqlite`.

use std::fmt;
use std::path::Path;

use crate::error::PersistenceError;

/// The two databases Kuku writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    MySql,
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::MySql => "mysql",
            Backend::Sqlite => "sqlite",
        })
    }
}

/// A validated database URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("url", &self.redacted())
            .field("backend", &self.backend)
            .finish()
    }
}

/// Prints the URL with its password masked.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl DatabaseUrl {
    /// Parses and checks a URL (its scheme, and for MySQL that it names a host and a database).
    pub fn parse(url: &str) -> Result<DatabaseUrl, PersistenceError> {
        let invalid = |reason: &str| PersistenceError::InvalidUrl {
            url: redact(url),
            reason: reason.to_owned(),
        };
        let url = url.trim();
        if let Some(rest) = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
        {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if host.is_empty() {
                return Err(invalid("no host"));
            }
            let database = path.split('?').next().unwrap_or("");
            if database.is_empty() {
                return Err(invalid("no database name after the host"));
            }
            if !database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
            {
                return Err(invalid(
                    "the database name may hold only letters, digits, '_', '-' and '$'",
                ));
            }
            return Ok(DatabaseUrl {
                url: format!("mysql://{rest}"),
                backend: Backend::MySql,
            });
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid("no file path"));
            }
            return Ok(DatabaseUrl {
                url: url.to_owned(),
                backend: Backend::Sqlite,
            });
        }
        Err(invalid("unsupported scheme"))
    }

    /// The embedded SQLite file at `path` (created if missing).
    pub fn sqlite_file(path: &Path) -> DatabaseUrl {
        DatabaseUrl {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            backend: Backend::Sqlite,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL as given (with its password): for the driver only, never for logs.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// The SQLite file this URL names, if it is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let rest = self.url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        Some(Path::new(rest.split('?').next().unwrap_or(rest)))
    }
}

/// Masks the password of `scheme://user:password@host...`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_and_sqlite_urls_parse_and_print_without_password() {
        let u = DatabaseUrl::parse("mysql://kuku:s3cret@127.0.0.1:3306/kuku").unwrap();
        assert_eq!(u.backend(), Backend::MySql);
        assert_eq!(u.to_string(), "mysql://kuku:***@127.0.0.1:3306/kuku");
        assert!(!format!("{u:?}").contains("s3cret"));
        let u = DatabaseUrl::parse("mariadb://root@localhost/test?ssl-mode=disabled").unwrap();
        assert_eq!(u.expose(), "mysql://root@localhost/test?ssl-mode=disabled");
        let u = DatabaseUrl::parse("sqlite:///srv/x/kuku.sqlite?mode=rwc").unwrap();
        assert_eq!(u.backend(), Backend::Sqlite);
        assert_eq!(u.sqlite_path(), Some(Path::new("/srv/x/kuku.sqlite")));
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for (url, reason) in [
            ("postgres://a@b/c", "unsupported scheme"),
            ("mysql//root@localhost/x", "unsupported scheme"),
            ("mysql://root:pw@localhost", "no database name"),
            ("mysql://root:pw@/db", "no host"),
            ("mysql://root@localhost/a;drop", "may hold only"),
            ("sqlite:", "no file path"),
        ] {
            let e = DatabaseUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(reason), "{url}: {e}");
            assert!(!e.contains(":pw@"), "the password is masked: {e}");
        }
    }
}
