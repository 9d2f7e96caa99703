//! A small blocking HTTP/1.1 client for the HTTP door's tests: one connection per request
//! (`Connection: close`), bounded by a read timeout; JSON helpers.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A bound on every request.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The problem's `code` after checking the problem shape and its status.
    pub fn problem_code(&self) -> u64 {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "status {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let p = self.json();
        assert_eq!(p["status"].as_u64(), Some(self.status as u64), "{p}");
        let code = p["code"].as_u64().expect("a code");
        assert_eq!(p["type"], format!("urn:kuku:code:{code}"));
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        assert!(p["detail"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        code
    }
}

/// Sends one request.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP door");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    // Written on another thread while this one reads: a server that refuses a large body
    // answers and closes before reading it all.
    let mut writer = stream.try_clone().expect("a second handle");
    let written = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = written.join();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// A client of one HTTP door with an optional bearer token.
#[derive(Clone, Debug)]
pub struct Api {
    pub addr: SocketAddr,
    pub bearer: Option<String>,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api { addr, bearer: None }
    }

    pub fn with_bearer(&self, bearer: &str) -> Api {
        Api {
            addr: self.addr,
            bearer: Some(bearer.to_owned()),
        }
    }

    pub fn send(&self, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> Reply {
        let auth = self.bearer.as_ref().map(|b| format!("Bearer {b}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        if let Some(k) = key {
            headers.push(("Idempotency-Key", k));
        }
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        request(self.addr, method, path, &headers, body.as_deref())
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, None)
    }

    pub fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        self.send("POST", path, key, Some(body))
    }
}

/// The admin API (the admin token as the bearer).
pub fn admin(addr: SocketAddr) -> Api {
    Api::new(addr).with_bearer(&kuku_gateway::auth::encode_hex(&super::ADMIN_TOKEN))
}

/// Opens an account with `cash` KRW through the admin API; returns its id.
pub fn funded(addr: SocketAddr, owner: &str, cash: i64) -> u32 {
    let admin = admin(addr);
    let r = admin.post(
        "/api/v1/admin/accounts",
        None,
        &serde_json::json!({ "owner": owner }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let account = r.json()["account"].as_u64().unwrap() as u32;
    if cash > 0 {
        let r = admin.post(
            "/api/v1/admin/deposits",
            None,
            &serde_json::json!({ "account": account, "amount": cash, "external_ref": format!("{owner}-dep") }),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    account
}

/// An access token for `account` (its trading token from the admin API, exchanged).
pub fn login(addr: SocketAddr, account: u32) -> Api {
    let r = admin(addr).post(
        &format!("/api/v1/admin/accounts/{account}/token"),
        None,
        &serde_json::json!({}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let r = Api::new(addr).post(
        "/api/v1/auth/token",
        None,
        &serde_json::json!({ "account": account, "token": token }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let jwt = r.json()["access_token"].as_str().unwrap().to_owned();
    Api::new(addr).with_bearer(&jwt)
}

/// A limit order's body.
pub fn limit(symbol: &str, side: &str, qty: i64, price: i64) -> Value {
    serde_json::json!({ "symbol": symbol, "side": side, "type": "limit", "tif": "day", "price": price, "qty": qty })
}
