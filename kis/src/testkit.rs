//! A fake KIS server for tests: the token, approval and current-price REST endpoints and the
//! WebSocket (`/tryitout`), speaking the shapes of [`crate::rest`] and [`crate::frame`] and
//! serving the committed golden frames (`tests/golden/kis-frames.txt`) in a loop, with
//! faults a test turns on and off while it runs ([`Faults`]).
//!
//! **Invariants**: binds 127.0.0.1 only; every loop is paced by `frame_interval` and ends
//! when the server is dropped.
//!
//! **Known limitations**: one golden file; the WebSocket serves every subscribed symbol's
//! frames in file order; encrypted streams are not modelled.

use crate::frame::{self, ShortCode};
use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The golden frames, one per line (`#` lines are comments).
pub const GOLDEN_FRAMES: &str = include_str!("../tests/golden/kis-frames.txt");

/// The data frames of [`GOLDEN_FRAMES`].
pub fn golden_frames() -> Vec<&'static str> {
    GOLDEN_FRAMES
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

pub const APP_KEY: &str = "fake-app-key";
pub const APP_SECRET: &str = "fake-app-secret";

/// Faults, switched while the server runs. Counts are "the next N".
#[derive(Debug, Default)]
pub struct Faults {
    /// Delay before every REST answer.
    pub rest_delay_ms: AtomicU64,
    /// The next N REST answers are HTTP 500.
    pub rest_5xx: AtomicU64,
    /// The next N approval requests are refused (HTTP 403).
    pub approval_failures: AtomicU64,
    /// Close the WebSocket after this many data frames in a session (0: never).
    pub ws_drop_after_frames: AtomicU64,
    /// The next N data frames are replaced by malformed text.
    pub malformed_frames: AtomicU64,
    /// Send nothing on the WebSocket (no data, no PINGPONG).
    pub silence: AtomicBool,
    /// Refuse WebSocket upgrades (HTTP 503).
    pub ws_refuse: AtomicBool,
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub token_issues: AtomicU64,
    pub approvals: AtomicU64,
    pub price_calls: AtomicU64,
    pub ws_sessions: AtomicU64,
    pub pingpong_echoes: AtomicU64,
    /// (tr_type, tr_id, tr_key) of every subscribe request, in order.
    pub subscribe_requests: Mutex<Vec<(String, String, String)>>,
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct FakeKisConfig {
    pub frame_interval: Duration,
    /// A PINGPONG after every this many data frames.
    pub pingpong_every_frames: u64,
    pub token_lifetime_s: u64,
    /// Shortest time between two token issues (answered 403 EGW00133 otherwise).
    pub token_issue_interval: Duration,
    pub subscriptions_max: usize,
}

impl Default for FakeKisConfig {
    fn default() -> FakeKisConfig {
        FakeKisConfig {
            frame_interval: Duration::from_millis(20),
            pingpong_every_frames: 5,
            token_lifetime_s: 86_400,
            token_issue_interval: Duration::ZERO,
            subscriptions_max: crate::config::SUBSCRIPTIONS_PER_SESSION_MAX,
        }
    }
}

struct ServerState {
    config: FakeKisConfig,
    faults: Arc<Faults>,
    seen: Arc<Seen>,
    tokens: Mutex<Tokens>,
    approvals: Mutex<BTreeSet<String>>,
    prices: BTreeMap<String, i64>,
}

#[derive(Default)]
struct Tokens {
    issued: u64,
    /// Tokens numbered below this are expired.
    valid_from: u64,
    last_issue: Option<Instant>,
}

/// A running fake KIS; dropping it stops the server.
pub struct FakeKis {
    pub addr: SocketAddr,
    pub faults: Arc<Faults>,
    pub seen: Arc<Seen>,
    state: Arc<ServerState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeKis {
    pub fn start(config: FakeKisConfig) -> std::io::Result<FakeKis> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut prices = BTreeMap::new();
        let mut records = Vec::new();
        for line in golden_frames() {
            let _ = frame::decode(line, &mut records);
        }
        for r in &records {
            if let frame::Record::Trade(t) = r {
                prices.insert(t.code.to_string(), t.price.0);
            }
        }
        let state = Arc::new(ServerState {
            config,
            faults: Arc::new(Faults::default()),
            seen: Arc::new(Seen::default()),
            tokens: Mutex::new(Tokens::default()),
            approvals: Mutex::new(BTreeSet::new()),
            prices,
        });
        let app = axum::Router::new()
            .route("/oauth2/tokenP", post(token))
            .route("/oauth2/Approval", post(approval))
            .route(crate::rest::PATH_INQUIRE_PRICE, get(inquire_price))
            .route("/tryitout", get(websocket))
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("fake-kis".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
            })?;
        Ok(FakeKis {
            addr,
            faults: state.faults.clone(),
            seen: state.seen.clone(),
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn rest_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/tryitout", self.addr)
    }

    /// Every token issued so far is expired from now on (KIS msg_cd EGW00123).
    pub fn expire_tokens(&self) {
        let mut t = lock(&self.state.tokens);
        t.valid_from = t.issued + 1;
    }

    /// The price the inquiry answers for `code`.
    pub fn price_of(&self, code: ShortCode) -> Option<i64> {
        self.state.prices.get(code.as_str()).copied()
    }
}

impl Drop for FakeKis {
    fn drop(&mut self) {
        self.faults.silence.store(true, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // The graceful shutdown waits for open WebSockets; the thread is detached instead of
        // joined so a test never hangs on a client that keeps its socket open.
        drop(self.thread.take());
    }
}

async fn rest_faults(state: &ServerState) -> Option<Response> {
    let delay = state.faults.rest_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let take = |c: &AtomicU64| {
        c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    if take(&state.faults.rest_5xx) {
        let body = json!({"rt_cd": "1", "msg_cd": "EGW00500", "msg1": "internal error (injected)"});
        return Some((StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response());
    }
    None
}

fn credentials_ok(body: &Value, secret_field: &str) -> bool {
    body.get("grant_type").and_then(Value::as_str) == Some("client_credentials")
        && body.get("appkey").and_then(Value::as_str) == Some(APP_KEY)
        && body.get(secret_field).and_then(Value::as_str) == Some(APP_SECRET)
}

async fn token(State(state): State<Arc<ServerState>>, Json(body): Json<Value>) -> Response {
    if let Some(r) = rest_faults(&state).await {
        return r;
    }
    if !credentials_ok(&body, "appsecret") {
        let body =
            json!({"error_code": "EGW00103", "error_description": "유효하지 않은 AppKey입니다."});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let mut tokens = lock(&state.tokens);
    if let Some(last) = tokens.last_issue
        && last.elapsed() < state.config.token_issue_interval
    {
        let body = json!({"error_code": "EGW00133", "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)"});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    tokens.issued += 1;
    tokens.last_issue = Some(Instant::now());
    state.seen.token_issues.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "access_token": format!("fake-token-{}", tokens.issued),
        "access_token_token_expired": "2026-12-31 23:59:59",
        "token_type": "Bearer",
        "expires_in": state.config.token_lifetime_s,
    }))
    .into_response()
}

async fn approval(State(state): State<Arc<ServerState>>, Json(body): Json<Value>) -> Response {
    if let Some(r) = rest_faults(&state).await {
        return r;
    }
    let refused = state
        .faults
        .approval_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refused || !credentials_ok(&body, "secretkey") {
        let body = json!({"error_code": "EGW00105", "error_description": "유효하지 않은 AppSecret입니다."});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let n = state.seen.approvals.fetch_add(1, Ordering::SeqCst) + 1;
    let key = format!("fake-approval-{n}");
    lock(&state.approvals).insert(key.clone());
    Json(json!({ "approval_key": key })).into_response()
}

async fn inquire_price(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = rest_faults(&state).await {
        return r;
    }
    state.seen.price_calls.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let token_no = header("authorization")
        .strip_prefix("Bearer fake-token-")
        .and_then(|n| n.parse::<u64>().ok());
    let tokens = lock(&state.tokens);
    let valid =
        matches!(token_no, Some(n) if n >= tokens.valid_from && n <= tokens.issued && n > 0);
    drop(tokens);
    if !valid {
        let body =
            json!({"rt_cd": "1", "msg_cd": "EGW00123", "msg1": "기간이 만료된 token 입니다."});
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    }
    if header("tr_id") != crate::rest::TR_INQUIRE_PRICE
        || header("appkey") != APP_KEY
        || header("appsecret") != APP_SECRET
    {
        let body = json!({"rt_cd": "1", "msg_cd": "EGW00205", "msg1": "headers do not match"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let code = query.get("FID_INPUT_ISCD").cloned().unwrap_or_default();
    match (query.get("FID_COND_MRKT_DIV_CODE").map(String::as_str), state.prices.get(&code)) {
        (Some("J"), Some(price)) => Json(json!({
            "output": {"stck_shrn_iscd": code, "stck_prpr": price.to_string(), "prdy_vrss": "0", "acml_vol": "1000"},
            "rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다."
        }))
        .into_response(),
        _ => Json(json!({"rt_cd": "1", "msg_cd": "OPSQ2002", "msg1": "조회할 자료가 없습니다"})).into_response(),
    }
}

async fn websocket(State(state): State<Arc<ServerState>>, upgrade: WebSocketUpgrade) -> Response {
    if state.faults.ws_refuse.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    upgrade.on_upgrade(move |socket| ws_session(state, socket))
}

fn ack(tr_id: &str, tr_key: &str, rt_cd: &str, msg: &str) -> String {
    json!({
        "header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": "N"},
        "body": {"rt_cd": rt_cd, "msg_cd": if rt_cd == "0" { "OPSP0000" } else { "OPSP0008" }, "msg1": msg}
    })
    .to_string()
}

/// Handles a subscribe request; returns the answer to send.
fn on_subscribe(
    state: &ServerState,
    text: &str,
    subscribed: &mut BTreeSet<(String, String)>,
) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v["header"]["tr_id"] == "PINGPONG" {
        state.seen.pingpong_echoes.fetch_add(1, Ordering::SeqCst);
        return None;
    }
    let key = v["header"]["approval_key"].as_str().unwrap_or("");
    let tr_type = v["header"]["tr_type"].as_str().unwrap_or("").to_string();
    let tr_id = v["body"]["input"]["tr_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let tr_key = v["body"]["input"]["tr_key"]
        .as_str()
        .unwrap_or("")
        .to_string();
    lock(&state.seen.subscribe_requests).push((tr_type.clone(), tr_id.clone(), tr_key.clone()));
    if !lock(&state.approvals).contains(key) {
        return Some(ack(&tr_id, &tr_key, "1", "invalid approval : NOT FOUND"));
    }
    let entry = (tr_id.clone(), tr_key.clone());
    match tr_type.as_str() {
        "1" if subscribed.len() >= state.config.subscriptions_max => {
            Some(ack(&tr_id, &tr_key, "1", "MAX SUBSCRIBE OVER"))
        }
        "1" => {
            subscribed.insert(entry);
            Some(ack(&tr_id, &tr_key, "0", "SUBSCRIBE SUCCESS"))
        }
        "2" => {
            subscribed.remove(&entry);
            Some(ack(&tr_id, &tr_key, "0", "UNSUBSCRIBE SUCCESS"))
        }
        _ => Some(ack(&tr_id, &tr_key, "1", "invalid tr_type")),
    }
}

/// Whether a golden frame is for a subscribed (tr_id, symbol): its first record's code.
fn wanted(line: &str, subscribed: &BTreeSet<(String, String)>) -> bool {
    let mut parts = line.splitn(4, '|');
    let (_, tr_id, _, payload) = (parts.next(), parts.next(), parts.next(), parts.next());
    let code = payload.and_then(|p| p.split('^').next()).unwrap_or("");
    subscribed
        .iter()
        .any(|(t, k)| Some(t.as_str()) == tr_id && k == code)
}

async fn ws_session(state: Arc<ServerState>, mut socket: WebSocket) {
    state.seen.ws_sessions.fetch_add(1, Ordering::SeqCst);
    let frames = golden_frames();
    let mut subscribed = BTreeSet::new();
    let mut next_frame = 0usize;
    let mut sent_frames = 0u64;
    let mut ticker = tokio::time::interval(state.config.frame_interval);
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(_)) => continue,
                    _ => return,
                };
                if let Some(answer) = on_subscribe(&state, &text, &mut subscribed)
                    && socket.send(Message::Text(answer.into())).await.is_err()
                {
                    return;
                }
            }
            _ = ticker.tick() => {
                if state.faults.silence.load(Ordering::SeqCst) || subscribed.is_empty() {
                    continue;
                }
                let drop_after = state.faults.ws_drop_after_frames.load(Ordering::SeqCst);
                if drop_after > 0 && sent_frames >= drop_after {
                    return; // drops the socket without a close frame
                }
                let Some(text) = next_wanted(&frames, &mut next_frame, &subscribed) else { continue };
                let malformed = state.faults.malformed_frames
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                let text = if malformed { format!("0|H0STCNT0|002|{}", &text[15..text.len().min(80)]) } else { text.to_string() };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                sent_frames += 1;
                let every = state.config.pingpong_every_frames;
                if every > 0 && sent_frames.is_multiple_of(every) {
                    let ping = json!({"header": {"tr_id": "PINGPONG", "datetime": "20261207090000"}}).to_string();
                    if socket.send(Message::Text(ping.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn next_wanted<'a>(
    frames: &[&'a str],
    next: &mut usize,
    subscribed: &BTreeSet<(String, String)>,
) -> Option<&'a str> {
    for _ in 0..frames.len() {
        let line = frames[*next % frames.len()];
        *next = next.wrapping_add(1);
        if wanted(line, subscribed) {
            return Some(line);
        }
    }
    None
}
