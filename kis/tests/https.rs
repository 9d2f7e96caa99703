//! The REST client over TLS against the fake KIS behind a local TLS front whose certificates
//! (a CA and a server certificate for `localhost`) are made at test time: the token issue and
//! a whole adapter session over https with the CA file, the refusals of an unknown issuer and
//! of a host name the certificate does not name, and the deadline over a handshake that never
//! finishes. Everything binds 127.0.0.1; every wait is bounded.

use kuku_kis::http::{BaseUrl, Endpoint};
use kuku_kis::rest::RestClient;
use kuku_kis::testkit::{self, FakeKis, FakeKisConfig};
use kuku_kis::{KisAdapter, KisConfig, KisError, KisEvent, KisLimits, Secret, ShortCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const WAIT_MAX: Duration = Duration::from_secs(15);
/// How long the stalling server holds an accepted connection.
const STALL_HOLD: Duration = Duration::from_secs(10);

/// A test CA, a server certificate it signed for `localhost`, and the CA's PEM file.
struct Pki {
    chain: Vec<CertificateDer<'static>>,
    key_pkcs8: Vec<u8>,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kuku test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    let server = server_params
        .signed_by(&server_key, &ca)
        .expect("server cert");
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write ca");
    Pki {
        chain: vec![server.der().clone(), ca.der().clone()],
        key_pkcs8: server_key.serialize_der(),
        ca_file,
        _dir: dir,
    }
}

#[derive(Clone, Copy)]
enum FrontMode {
    /// TLS in front of the fake KIS.
    Forward(SocketAddr),
    /// Accept TCP, then send nothing (a handshake that never finishes).
    Stall,
}

/// A TLS-terminating server on 127.0.0.1 in front of the fake KIS; dropping it stops it.
struct TlsFront {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TlsFront {
    fn start(pki: &Pki, mode: FrontMode) -> TlsFront {
        let provider = kuku_kis::http::ring_provider();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_pkcs8.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match mode {
                            FrontMode::Stall => {
                                tokio::time::sleep(STALL_HOLD).await;
                                drop(tcp);
                            }
                            FrontMode::Forward(target) => {
                                let Ok(mut tls) = acceptor.accept(tcp).await else {
                                    return;
                                };
                                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await
                                else {
                                    return;
                                };
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                            }
                        }
                    });
                }
            });
        });
        TlsFront {
            port,
            stop: Some(stop),
        }
    }

    fn base(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn fake_addr(fake: &FakeKis) -> SocketAddr {
    fake.rest_base()
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .expect("fake address")
}

fn client(base: &str, ca_file: Option<&Path>, timeout: Duration) -> RestClient {
    let endpoint = Endpoint::new(BaseUrl::parse(base).expect("base"), ca_file).expect("endpoint");
    RestClient::new(
        endpoint,
        Secret::new(testkit::APP_KEY),
        Secret::new(testkit::APP_SECRET),
        timeout,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_token_is_issued_over_https_when_the_ca_file_vouches_for_the_server() {
    let pki = pki();
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let front = TlsFront::start(&pki, FrontMode::Forward(fake_addr(&fake)));
    let rest = client(
        &front.base("localhost"),
        Some(&pki.ca_file),
        Duration::from_secs(5),
    );
    let rt = runtime();
    let token = rt.block_on(rest.issue_token()).expect("token over https");
    assert!(!token.value.is_empty());
    assert_eq!(
        token.expires_in_s,
        FakeKisConfig::default().token_lifetime_s
    );
    let price = rt
        .block_on(rest.current_price(&token.value, ShortCode::parse("005930").expect("code")))
        .expect("price over https");
    assert_eq!(
        Some(price.0),
        fake.price_of(ShortCode::parse("005930").expect("code"))
    );
    assert_eq!(fake.seen.token_issues.load(Ordering::SeqCst), 1);
    assert_eq!(fake.seen.price_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn without_the_ca_file_the_handshake_is_refused_naming_the_unknown_issuer() {
    let pki = pki();
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let front = TlsFront::start(&pki, FrontMode::Forward(fake_addr(&fake)));
    let rest = client(&front.base("localhost"), None, Duration::from_secs(5));
    let err = runtime()
        .block_on(rest.issue_token())
        .expect_err("an unknown issuer must be refused");
    let text = err.to_string();
    assert!(
        matches!(&err, KisError::Certificate { call: "token", .. }),
        "{text}"
    );
    assert!(text.contains("unknown issuer"), "{text}");
    assert!(
        text.contains(&format!("localhost:{}", front.port)),
        "{text}"
    );
    assert!(!err.is_transient(), "a certificate refusal repeats: {text}");
    assert_eq!(
        fake.seen.token_issues.load(Ordering::SeqCst),
        0,
        "no request may pass an unverified handshake"
    );
}

#[test]
fn a_host_name_the_certificate_does_not_name_is_refused() {
    let pki = pki();
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let front = TlsFront::start(&pki, FrontMode::Forward(fake_addr(&fake)));
    // The certificate names `localhost` only; 127.0.0.1 is the same server under a name the
    // certificate does not carry.
    let rest = client(
        &front.base("127.0.0.1"),
        Some(&pki.ca_file),
        Duration::from_secs(5),
    );
    let err = runtime()
        .block_on(rest.issue_token())
        .expect_err("a wrong name must be refused");
    let text = err.to_string();
    assert!(matches!(&err, KisError::Certificate { .. }), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(text.contains("localhost"), "{text}");
    assert_eq!(fake.seen.token_issues.load(Ordering::SeqCst), 0);
}

#[test]
fn the_deadline_covers_a_server_that_never_finishes_the_handshake() {
    let pki = pki();
    let front = TlsFront::start(&pki, FrontMode::Stall);
    let timeout = Duration::from_millis(300);
    let rest = client(&front.base("localhost"), Some(&pki.ca_file), timeout);
    let started = Instant::now();
    let err = runtime()
        .block_on(rest.issue_token())
        .expect_err("a stalled handshake must time out");
    assert!(
        matches!(
            err,
            KisError::Timeout {
                call: "token",
                timeout_ms: 300
            }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < STALL_HOLD,
        "the call waited for the server instead of its deadline"
    );
}

#[test]
fn the_adapter_runs_a_session_with_an_https_rest_base_and_a_ca_file() {
    let pki = pki();
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let front = TlsFront::start(&pki, FrontMode::Forward(fake_addr(&fake)));
    let dir = tempfile::tempdir().expect("dir");
    let config = KisConfig {
        rest_base: front.base("localhost"),
        rest_ca_file: Some(pki.ca_file.clone()),
        ws_url: fake.ws_url(),
        app_key: Secret::new(testkit::APP_KEY),
        app_secret: Secret::new(testkit::APP_SECRET),
        token_cache: dir.path().join("kis-token.json"),
        symbols: vec![ShortCode::parse("005930").expect("code")],
        limits: KisLimits::default(),
    };
    let adapter = KisAdapter::start(config).expect("adapter");
    let deadline = Instant::now() + WAIT_MAX;
    let mut records = 0;
    while records < 3 {
        assert!(
            Instant::now() < deadline,
            "no records over the https session"
        );
        if let Some(KisEvent::Record(_)) = adapter.recv_timeout(Duration::from_millis(20)) {
            records += 1;
        }
    }
    assert_eq!(fake.seen.approvals.load(Ordering::SeqCst), 1);
    adapter.stop();
}
