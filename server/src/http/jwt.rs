//! Access tokens of the HTTP door: JWTs signed with HS256 under a key of the door's own (not
//! the gateway's account-token secret), `sub` = the account id, `iss` = "kuku", `iat` and
//! `exp` (issue time + `token_ttl_s`, 15 minutes by default).
//!
//! **Invariants**: verification accepts HS256 only: a token whose header names another
//! algorithm (HS512, RS256, `none`, anything) is refused before its signature is looked at,
//! so a key can never be used as another algorithm's key (alg confusion). `exp`, `sub` and
//! `iss` are required; there is no leeway on `exp`.
//!
//! **Performance**: one HMAC-SHA256 over the header and claims per request, plus base64 and
//! a small JSON decode.
//!
//! **Known limitations**: no revocation: a token stays valid until it expires (rotate the key
//! file to void every token at once).

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kuku_engine::AccountId;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The issuer every token carries.
pub const ISSUER: &str = "kuku";

/// A token's claims.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The account id, in decimal.
    pub sub: String,
    pub iss: String,
    /// Seconds since the Unix epoch.
    pub iat: u64,
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not a valid HS256 token of this server")]
    Invalid,
}

/// The door's signing and verification keys.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_s: u64,
}

impl JwtKeys {
    pub fn new(key: &[u8; 32], ttl_s: u64) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(key).expect("a 32-byte HMAC key is valid"),
            decoding: DecodingKey::from_secret(key).expect("a 32-byte HMAC key is valid"),
            validation,
            ttl_s,
        }
    }

    pub fn ttl_s(&self) -> u64 {
        self.ttl_s
    }

    /// A token for `account`, issued at `now_s`; returns it and its expiry.
    pub fn issue(&self, account: AccountId, now_s: u64) -> anyhow::Result<(String, u64)> {
        let exp = now_s.saturating_add(self.ttl_s);
        let claims = Claims {
            sub: account.0.to_string(),
            iss: ISSUER.to_owned(),
            iat: now_s,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("cannot sign an access token")?;
        Ok((token, exp))
    }

    /// The account a token speaks for.
    pub fn verify(&self, token: &str) -> Result<AccountId, TokenRefusal> {
        self.verify_with_expiry(token).map(|(account, _)| account)
    }

    /// The account a token speaks for and its expiry (`exp`, Unix seconds): a WebSocket
    /// session stays bound to the account until then.
    pub fn verify_with_expiry(&self, token: &str) -> Result<(AccountId, u64), TokenRefusal> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenRefusal::Expired,
                _ => TokenRefusal::Invalid,
            })?;
        // Belt and braces: the header was checked against the allowed list already.
        if data.header.alg != Algorithm::HS256 {
            return Err(TokenRefusal::Invalid);
        }
        match data.claims.sub.parse::<u32>() {
            Ok(id) if id > 0 && data.claims.sub == id.to_string() => {
                Ok((AccountId(id), data.claims.exp))
            }
            _ => Err(TokenRefusal::Invalid),
        }
    }
}

/// Loads the key file (64 hex digits), or creates it (mode 0600) with a fresh random key.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the JWT key file {}", path.display()))?;
        return kuku_gateway::auth::decode_hex32(text.trim()).with_context(|| {
            format!(
                "the JWT key file {} must hold 64 hex digits",
                path.display()
            )
        });
    }
    let key = kuku_gateway::auth::random_bytes32().context("cannot draw a random JWT key")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the JWT key file {}", path.display()))?;
    let text = format!("{}\n", kuku_gateway::auth::encode_hex(&key));
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("cannot write the JWT key file {}", path.display()))?;
    Ok(key)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [0x11; 32];

    #[test]
    fn a_token_verifies_for_its_account_until_it_expires() {
        let keys = JwtKeys::new(&KEY, 900);
        let now = now_s();
        let (token, exp) = keys.issue(AccountId(42), now).unwrap();
        assert_eq!(exp, now + 900);
        assert_eq!(keys.verify(&token), Ok(AccountId(42)));
        let (old, _) = keys.issue(AccountId(42), now - 901).unwrap();
        assert_eq!(keys.verify(&old), Err(TokenRefusal::Expired));
    }

    #[test]
    fn another_key_or_algorithm_is_refused() {
        let keys = JwtKeys::new(&KEY, 900);
        let other = JwtKeys::new(&[0x22; 32], 900);
        let (token, _) = other.issue(AccountId(42), now_s()).unwrap();
        assert_eq!(keys.verify(&token), Err(TokenRefusal::Invalid));
        let claims = Claims {
            sub: "42".into(),
            iss: ISSUER.into(),
            iat: now_s(),
            exp: now_s() + 60,
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(&KEY).unwrap(),
        )
        .unwrap();
        assert_eq!(keys.verify(&hs512), Err(TokenRefusal::Invalid));
        assert_eq!(keys.verify("not a token"), Err(TokenRefusal::Invalid));
        assert_eq!(keys.verify(""), Err(TokenRefusal::Invalid));
    }

    #[test]
    fn a_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = load_or_create_key(&path).unwrap();
        assert_eq!(load_or_create_key(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "zz").unwrap();
        assert!(load_or_create_key(&path).is_err());
    }
}
