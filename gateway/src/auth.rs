//! Authentication: per-account tokens and the admin token.
//!
//! An account's token is `HMAC-SHA256(secret, "kuku-account-token-v1" || account u32 LE)`:
//! the server stores no per-account credential, any node holding the same secret accepts
//! the same tokens, and an admin issues a token with `IssueToken`. The admin token is a
//! separate 32-byte secret. Both are compared in constant time.
//!
//! **Known limitations**: a token never expires and cannot be revoked except by rotating the
//! secret (which invalidates every token); tokens travel in clear text (no TLS yet).

use hmac::{Hmac, Mac};
use kuku_engine::AccountId;
use sha2::Sha256;

/// A login token (account or admin).
pub type Token = [u8; 32];

const ACCOUNT_TOKEN_CONTEXT: &[u8] = b"kuku-account-token-v1";

/// The server secret that account tokens are derived from.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("expected {expected} hex digits, found {found}")]
    Length { expected: usize, found: usize },
    #[error("not a hex digit: {0:?}")]
    Digit(char),
}

impl Secret {
    pub fn from_bytes(bytes: [u8; 32]) -> Secret {
        Secret(bytes)
    }

    pub fn from_hex(s: &str) -> Result<Secret, HexError> {
        decode_hex32(s).map(Secret)
    }

    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// The login token of `account`.
    pub fn account_token(&self, account: AccountId) -> Token {
        let out = self.mac(account).finalize().into_bytes();
        let mut token = [0u8; 32];
        token.copy_from_slice(&out);
        token
    }

    /// True if `token` is `account`'s token (constant time).
    pub fn verify(&self, account: AccountId, token: &Token) -> bool {
        self.mac(account).verify_slice(token).is_ok()
    }

    fn mac(&self, account: AccountId) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(ACCOUNT_TOKEN_CONTEXT);
        mac.update(&account.0.to_le_bytes());
        mac
    }
}

/// Constant-time equality of two tokens (for the admin token).
pub fn tokens_equal(a: &Token, b: &Token) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// 32 random bytes from the operating system.
pub fn random_bytes32() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses 64 hex digits (surrounding whitespace ignored).
pub fn decode_hex32(s: &str) -> Result<[u8; 32], HexError> {
    let s = s.trim();
    if s.len() != 64 {
        return Err(HexError::Length {
            expected: 64,
            found: s.len(),
        });
    }
    let mut out = [0u8; 32];
    let digit = |c: u8| -> Result<u8, HexError> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(HexError::Digit(c as char))
    };
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Ok(out)
}

/// The gateway's credentials as `kuku serve` stores them (`gateway-secrets.toml` under the
/// data directory, mode 0600) and `kuku admin` reads them: two lines,
/// `secret = "<64 hex>"` and `admin_token = "<64 hex>"`.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub secret: Secret,
    pub admin_token: Token,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid {
        path: std::path::PathBuf,
        message: String,
    },
}

impl Credentials {
    /// Fresh random credentials.
    pub fn generate() -> std::io::Result<Credentials> {
        Ok(Credentials {
            secret: Secret::from_bytes(random_bytes32()?),
            admin_token: random_bytes32()?,
        })
    }

    pub fn to_file_text(&self) -> String {
        format!(
            "# Kuku gateway credentials: keep private.\nsecret = \"{}\"\nadmin_token = \"{}\"\n",
            self.secret.to_hex(),
            encode_hex(&self.admin_token)
        )
    }

    pub fn parse(text: &str, path: &std::path::Path) -> Result<Credentials, CredentialsError> {
        let invalid = |message: String| CredentialsError::Invalid {
            path: path.to_owned(),
            message,
        };
        let (mut secret, mut admin) = (None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(invalid(format!("not a `key = \"value\"` line: {line:?}")));
            };
            let value = value.trim().trim_matches('"');
            let bytes = decode_hex32(value).map_err(|e| invalid(format!("{}: {e}", key.trim())))?;
            match key.trim() {
                "secret" => secret = Some(Secret::from_bytes(bytes)),
                "admin_token" => admin = Some(bytes),
                other => return Err(invalid(format!("unknown key {other:?}"))),
            }
        }
        match (secret, admin) {
            (Some(secret), Some(admin_token)) => Ok(Credentials {
                secret,
                admin_token,
            }),
            _ => Err(invalid("needs both `secret` and `admin_token`".to_owned())),
        }
    }

    pub fn load(path: &std::path::Path) -> Result<Credentials, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Credentials::parse(&text, path)
    }

    /// Loads the file, or creates it (mode 0600) with fresh credentials.
    pub fn load_or_create(path: &std::path::Path) -> Result<Credentials, CredentialsError> {
        if path.exists() {
            return Credentials::load(path);
        }
        let write_err = |source| CredentialsError::Write {
            path: path.to_owned(),
            source,
        };
        let credentials = Credentials::generate().map_err(write_err)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(write_err)?;
        std::io::Write::write_all(&mut file, credentials.to_file_text().as_bytes())
            .map_err(write_err)?;
        Ok(credentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_tokens_verify_only_for_their_account_and_secret() {
        let secret = Secret::from_bytes([7; 32]);
        let token = secret.account_token(AccountId(42));
        assert!(secret.verify(AccountId(42), &token));
        assert!(!secret.verify(AccountId(43), &token));
        assert!(!Secret::from_bytes([8; 32]).verify(AccountId(42), &token));
        assert_eq!(token, secret.account_token(AccountId(42)), "deterministic");
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let bytes = [0xab; 32];
        assert_eq!(decode_hex32(&encode_hex(&bytes)), Ok(bytes));
        assert!(matches!(decode_hex32("abc"), Err(HexError::Length { .. })));
        assert_eq!(decode_hex32(&"zz".repeat(32)), Err(HexError::Digit('z')));
        assert!(tokens_equal(&bytes, &bytes));
        assert!(!tokens_equal(&bytes, &[0; 32]));
    }

    #[test]
    fn credentials_file_round_trips() {
        let c = Credentials::generate().unwrap();
        let path = std::path::Path::new("x.toml");
        let back = Credentials::parse(&c.to_file_text(), path).unwrap();
        assert_eq!(back.secret.to_hex(), c.secret.to_hex());
        assert_eq!(back.admin_token, c.admin_token);
        assert!(Credentials::parse("secret = \"00\"", path).is_err());
    }
}
