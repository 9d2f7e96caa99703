//! The HTTP door end to end against a real node (in-process, with the TCP gateway beside it):
//! access tokens (issue, expiry, algorithm confusion), account isolation on every endpoint,
//! idempotent resends and 409, each error status with its problem body, the rate limit shared
//! with the TCP door (429), the portfolio valuation against a hand computation, extremes of
//! every numeric field, and the served OpenAPI document.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kuku_engine::{AccountId, ClientOrderId, OrderType, Price, Qty, Side, TimeInForce};
use kuku_gateway::client::{LoginOptions, OrderSpec};
use kuku_gateway::protocol::Message;
use serde_json::{Value, json};
use support::http::{Api, admin, funded, limit, login, request};
use support::*;

const ORDERS: &str = "/api/v1/orders";

fn node() -> TestNode {
    TestNode::start_http_with(|_| {})
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str, exp: u64) -> Value {
    json!({ "sub": sub, "iss": "kuku", "iat": now_s(), "exp": exp })
}

/// A token with any header, signed (HMAC-SHA256 under `key`) or not.
fn crafted(header: &Value, claims: &Value, key: Option<&[u8]>) -> String {
    use hmac::Mac;
    let signing_input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let signature = match key {
        Some(k) => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(k).unwrap();
            mac.update(signing_input.as_bytes());
            B64.encode(mac.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

#[test]
fn an_access_token_is_issued_for_a_good_trading_token_only() {
    let t = node();
    let addr = t.http_addr();
    let alice = funded(addr, "alice", 1_000_000);
    let token = kuku_gateway::auth::encode_hex(&t.token(AccountId(alice)));
    let exchange = |account: u32, token: &str| {
        Api::new(addr).post(
            "/api/v1/auth/token",
            None,
            &json!({ "account": account, "token": token }),
        )
    };
    let r = exchange(alice, &token);
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900, "15 minutes by default");
    assert_eq!(body["account"], alice);
    let jwt = body["access_token"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&B64.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    let me = Api::new(addr).with_bearer(jwt).get("/api/v1/account");
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["account"], alice);

    // Another account's token, a malformed one, an account that does not exist.
    let other = kuku_gateway::auth::encode_hex(&t.token(AccountId(alice + 1)));
    for (account, token) in [
        (alice, other.as_str()),
        (alice, "zz"),
        (999, token.as_str()),
    ] {
        let r = exchange(account, token);
        assert_eq!(r.status, 401);
        assert_eq!(r.problem_code(), 9010);
    }
    // The body's numbers out of their type's range.
    for body in [
        json!({ "account": -1, "token": token }),
        json!({ "account": 4_294_967_296_u64, "token": token }),
        json!({ "account": "1", "token": token }),
    ] {
        let r = Api::new(addr).post("/api/v1/auth/token", None, &body);
        assert_eq!(r.status, 400);
        assert_eq!(r.problem_code(), 9020);
    }
}

#[test]
fn expired_foreign_and_algorithm_confused_tokens_are_refused() {
    let t = node();
    let addr = t.http_addr();
    let alice = funded(addr, "alice", 1_000_000).to_string();
    let good = claims(&alice, now_s() + 600);
    let sign = |alg: Algorithm, claims: &Value, key: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(key).unwrap(),
        )
        .unwrap()
    };
    // Sanity: a token minted with the door's key and HS256 is accepted.
    let ok = sign(Algorithm::HS256, &good, &JWT_KEY);
    assert_eq!(
        Api::new(addr)
            .with_bearer(&ok)
            .get("/api/v1/account")
            .status,
        200
    );

    let refused = [
        (
            "expired",
            sign(Algorithm::HS256, &claims(&alice, now_s() - 1), &JWT_KEY),
        ),
        (
            "HS512 under the same key",
            sign(Algorithm::HS512, &good, &JWT_KEY),
        ),
        (
            "HS384 under the same key",
            sign(Algorithm::HS384, &good, &JWT_KEY),
        ),
        (
            "the gateway's account secret",
            sign(Algorithm::HS256, &good, &SECRET),
        ),
        (
            "alg none, no signature",
            crafted(&json!({"alg": "none", "typ": "JWT"}), &good, None),
        ),
        ("alg None", crafted(&json!({"alg": "None"}), &good, None)),
        // RS256-shaped: the HMAC of the key used as if it were a public key.
        (
            "RS256 header",
            crafted(
                &json!({"alg": "RS256", "typ": "JWT"}),
                &good,
                Some(&JWT_KEY),
            ),
        ),
        (
            "no sub",
            sign(
                Algorithm::HS256,
                &json!({"iss": "kuku", "exp": now_s() + 60}),
                &JWT_KEY,
            ),
        ),
        (
            "account 0",
            sign(Algorithm::HS256, &claims("0", now_s() + 60), &JWT_KEY),
        ),
        (
            "another issuer",
            sign(
                Algorithm::HS256,
                &json!({"sub": alice, "iss": "x", "exp": now_s() + 60}),
                &JWT_KEY,
            ),
        ),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (what, token) in refused {
        let r = Api::new(addr).with_bearer(&token).get("/api/v1/account");
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.problem_code(), 9023, "{what}");
        let r = Api::new(addr).with_bearer(&token).post(
            ORDERS,
            Some("1"),
            &limit(SAMSUNG, "buy", 1, 119_900),
        );
        assert_eq!(r.status, 401, "{what}");
    }
    // No Authorization header, or another scheme.
    assert_eq!(Api::new(addr).get("/api/v1/account").problem_code(), 9023);
    let r = request(
        addr,
        "GET",
        "/api/v1/account",
        &[("Authorization", &format!("Basic {ok}"))],
        None,
    );
    assert_eq!(r.status, 401);
    // Nothing reached the node: no order exists.
    let page = Api::new(addr)
        .with_bearer(&ok)
        .get("/api/v1/orders?state=all")
        .json();
    assert_eq!(page["orders"].as_array().unwrap().len(), 0, "{page}");
}

#[test]
fn a_token_for_one_account_never_reads_or_changes_another() {
    let t = node();
    let addr = t.http_addr();
    let alice_id = funded(addr, "alice", 50_000_000);
    let bob_id = funded(addr, "bob", 50_000_000);
    let (alice, bob) = (login(addr, alice_id), login(addr, bob_id));
    let placed = alice.post(ORDERS, Some("a1"), &limit(SAMSUNG, "buy", 3, 119_000));
    assert_eq!(placed.status, 201, "{}", placed.json());
    let order_id = placed.json()["order"]["order_id"].as_u64().unwrap();
    let path = format!("{ORDERS}/{order_id}");

    // Bob cannot see, cancel or modify it: as if it did not exist.
    assert_eq!(bob.get(&path).problem_code(), 2007);
    let r = bob.send("DELETE", &path, Some("b1"), None);
    assert_eq!((r.status, r.problem_code()), (404, 2007));
    let r = bob.send(
        "PATCH",
        &path,
        Some("b2"),
        Some(&json!({"price": 118_000, "qty": 1})),
    );
    assert_eq!((r.status, r.problem_code()), (404, 2007));
    // Bob's cancel-all cancels nothing of Alice's.
    let r = bob.post(&format!("{ORDERS}/cancel-all"), Some("b3"), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["cancelled"], 0);
    // Bob's lists, account, positions and portfolio are his own.
    for state in ["open", "all"] {
        let page = bob.get(&format!("{ORDERS}?state={state}")).json();
        assert!(page["orders"].as_array().unwrap().is_empty(), "{page}");
    }
    assert_eq!(bob.get("/api/v1/account").json()["account"], bob_id);
    assert_eq!(bob.get("/api/v1/account").json()["held"], 0);
    assert!(
        bob.get("/api/v1/positions").json()["positions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        bob.get("/api/v1/portfolio").json()["account"]["account"],
        bob_id
    );
    // No trading endpoint takes an account: a query string naming Alice is refused.
    let r = bob.get(&format!("{ORDERS}?account={alice_id}"));
    assert_eq!((r.status, r.problem_code()), (400, 9020));
    // An account's token is not the admin token: 403 on every admin endpoint.
    for (method, p) in [
        ("POST", "/api/v1/admin/accounts".to_owned()),
        ("GET", format!("/api/v1/admin/accounts/{alice_id}")),
        ("POST", format!("/api/v1/admin/accounts/{alice_id}/token")),
        ("POST", "/api/v1/admin/deposits".to_owned()),
        ("POST", "/api/v1/admin/withdrawals".to_owned()),
        ("POST", "/api/v1/admin/transactions/1/confirm".to_owned()),
        ("POST", "/api/v1/admin/transactions/1/fail".to_owned()),
        ("POST", "/api/v1/admin/transactions/1/reverse".to_owned()),
        ("POST", "/api/v1/admin/transfers-in".to_owned()),
    ] {
        let r = bob.send(method, &p, None, Some(&json!({})));
        assert_eq!((r.status, r.problem_code()), (403, 9004), "{method} {p}");
    }
    // Alice's order and money are untouched.
    let mine = alice.get(&path).json();
    assert_eq!(mine["state"], "new");
    assert_eq!(mine["leaves"], 3);
    assert!(
        alice.get("/api/v1/account").json()["held"]
            .as_i64()
            .unwrap()
            > 0
    );
    let page = alice.get(ORDERS).json();
    assert_eq!(page["orders"].as_array().unwrap().len(), 1, "{page}");
}

#[test]
fn a_resent_key_returns_the_original_outcome_and_another_body_is_409() {
    let t = node();
    let addr = t.http_addr();
    let alice_id = funded(addr, "alice", 1_000_000);
    let alice = login(addr, alice_id);
    let order = limit(SAMSUNG, "buy", 2, 119_000);
    let first = alice.post(ORDERS, Some("order-7f3a"), &order);
    assert_eq!(first.status, 201);
    let first = first.json();
    assert_eq!(first["resent"], false);
    let again = alice.post(ORDERS, Some("order-7f3a"), &order);
    assert_eq!(again.status, 201, "the original status");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let again = again.json();
    assert_eq!(again["resent"], true);
    assert_eq!(again["order"]["order_id"], first["order"]["order_id"]);
    // The same key with another body.
    let other = alice.post(
        ORDERS,
        Some("order-7f3a"),
        &limit(SAMSUNG, "buy", 3, 119_000),
    );
    assert_eq!((other.status, other.problem_code()), (409, 2011));
    // Only one order exists, holding cash once.
    let page = alice.get(&format!("{ORDERS}?state=all")).json();
    assert_eq!(page["orders"].as_array().unwrap().len(), 1, "{page}");

    // A rejected request resends as the same rejection.
    let too_big = limit(SAMSUNG, "buy", 100, 119_000);
    let r = alice.post(ORDERS, Some("k2"), &too_big);
    assert_eq!((r.status, r.problem_code()), (422, 3002));
    let r = alice.post(ORDERS, Some("k2"), &too_big);
    assert_eq!((r.status, r.problem_code()), (422, 3002));

    // A cancel is keyed too: resending it changes nothing more.
    let path = format!("{ORDERS}/{}", first["order"]["order_id"]);
    let c1 = alice.send("DELETE", &path, Some("c1"), None);
    assert_eq!(c1.status, 200);
    assert_eq!(c1.json()["order"]["state"], "cancelled");
    let c2 = alice.send("DELETE", &path, Some("c1"), None);
    assert_eq!(c2.status, 200);
    assert_eq!(c2.json()["resent"], true);
    // A key is needed, and must be a visible-ASCII string of 1-64 characters.
    let r = alice.post(ORDERS, None, &order);
    assert_eq!((r.status, r.problem_code()), (400, 9021));
    let long = "k".repeat(65);
    let r = alice.post(ORDERS, Some(&long), &order);
    assert_eq!((r.status, r.problem_code()), (400, 9022));
}

#[test]
fn a_decimal_key_is_the_tcp_doors_client_order_id() {
    let t = node();
    let addr = t.http_addr();
    let alice_id = funded(addr, "alice", 1_000_000);
    let (mut tcp, _) = t.trader(AccountId(alice_id), LoginOptions::default());
    let spec = OrderSpec {
        client_order_id: Some(ClientOrderId(77)),
        ..OrderSpec::limit(code(SAMSUNG), Side::Buy, Qty(1), Price(119_000))
    };
    let placed = match tcp.place(spec).unwrap() {
        Message::OrderAccepted(a) => a,
        other => panic!("{other:?}"),
    };
    let http = login(addr, alice_id);
    let r = http.post(ORDERS, Some("77"), &limit(SAMSUNG, "buy", 1, 119_000));
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["resent"], true);
    assert_eq!(r.json()["order"]["order_id"], placed.order_id.0);
    // The same refusal, with the same code, on both doors.
    let market_day = OrderSpec {
        order_type: OrderType::Market,
        tif: TimeInForce::Day,
        price: Price(0),
        client_order_id: Some(ClientOrderId(78)),
        ..OrderSpec::limit(code(SAMSUNG), Side::Buy, Qty(1), Price(0))
    };
    let tcp_code = match tcp.place(market_day).unwrap() {
        Message::OrderRejected(r) => r.reason,
        other => panic!("{other:?}"),
    };
    let body = json!({"symbol": SAMSUNG, "side": "buy", "type": "market", "tif": "day", "qty": 1});
    let r = http.post(ORDERS, Some("78"), &body);
    assert_eq!(r.problem_code(), tcp_code as u64);
    assert_eq!(tcp_code, 9007);
}

#[test]
fn each_error_status_comes_with_its_problem_body() {
    let t = node();
    let addr = t.http_addr();
    let alice_id = funded(addr, "alice", 10_000_000);
    let alice = login(addr, alice_id);
    let post = |key: &str, body: &Value| alice.post(ORDERS, Some(key), body);
    // 400: not JSON, a field missing, an unknown field, a value out of range.
    let r = request(
        addr,
        "POST",
        ORDERS,
        &[
            (
                "Authorization",
                &format!("Bearer {}", alice.bearer.clone().unwrap()),
            ),
            ("Idempotency-Key", "x1"),
        ],
        Some(b"{not json"),
    );
    assert_eq!((r.status, r.problem_code()), (400, 9020));
    assert_eq!(post("x2", &json!({"symbol": SAMSUNG})).problem_code(), 9020);
    let mut extra = limit(SAMSUNG, "buy", 1, 119_000);
    extra["colour"] = json!("red");
    assert_eq!(post("x3", &extra).problem_code(), 9020);
    let r = post("x4", &limit(SAMSUNG, "buy", 1, 2_000_000_000));
    assert_eq!((r.status, r.problem_code()), (400, 2015));
    // 401 and 404.
    assert_eq!(Api::new(addr).get("/api/v1/portfolio").status, 401);
    let r = alice.get(&format!("{ORDERS}/123456"));
    assert_eq!((r.status, r.problem_code()), (404, 2007));
    let r = alice.get("/api/v1/no-such-thing");
    assert_eq!((r.status, r.problem_code()), (404, 9025));
    let r = alice.get("/api/v1/symbols/NOPE");
    assert_eq!((r.status, r.problem_code()), (404, 1001));
    // 413: a body beyond body_bytes_max.
    let huge = json!({"symbol": "x".repeat(64 * 1024), "side": "buy", "type": "limit", "tif": "day", "price": 1, "qty": 1});
    let r = post("x5", &huge);
    assert_eq!((r.status, r.problem_code()), (413, 9026));
    // 422: business rules, each with the engine's code.
    let cases = [
        (limit(SAMSUNG, "buy", 1_000, 119_900), 3002), // cash
        (limit(SAMSUNG, "sell", 1, 119_900), 3003),    // shares
        (limit(SAMSUNG, "buy", 1, 119_950), 2004),     // tick
        (limit(SAMSUNG, "buy", 1, 200_000), 2005),     // band
        (limit("NOPE", "buy", 1, 100), 1001),          // unknown symbol
    ];
    for (i, (body, code)) in cases.iter().enumerate() {
        let r = post(&format!("b{i}"), body);
        assert_eq!((r.status, r.problem_code()), (422, *code), "{body}");
    }
    // Nothing above had an effect.
    let account = alice.get("/api/v1/account").json();
    assert_eq!(
        (account["cash"].as_i64(), account["held"].as_i64()),
        (Some(10_000_000), Some(0))
    );
    assert!(
        alice.get(&format!("{ORDERS}?state=all")).json()["orders"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn orders_outside_the_continuous_session_are_422_market_closed() {
    let t =
        TestNode::start_http_with(|c| c.schedule = kuku_server::scheduler::ScheduleMode::Manual);
    let addr = t.http_addr();
    let alice = login(addr, funded(addr, "alice", 10_000_000));
    let r = alice.post(ORDERS, Some("1"), &limit(SAMSUNG, "buy", 1, 119_900));
    assert_eq!((r.status, r.problem_code()), (422, 1008));
}

#[test]
fn the_account_budget_is_shared_with_the_tcp_door_and_429_says_when_to_retry() {
    let t = TestNode::start_http_with(|c| {
        c.gateway.rate_per_s = 1;
        c.gateway.burst = 4;
    });
    let addr = t.http_addr();
    let alice_id = funded(addr, "alice", 1_000_000);
    let alice = login(addr, alice_id);
    // Two requests over TCP, two over HTTP: the budget of 4 is spent.
    let (mut tcp, _) = t.trader(AccountId(alice_id), LoginOptions::default());
    let _ = tcp.order_status(kuku_engine::OrderId(1)).unwrap();
    let _ = tcp.order_status(kuku_engine::OrderId(1)).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(alice.get("/api/v1/account"));
    }
    let ok = statuses.iter().filter(|r| r.status == 200).count();
    assert!(
        ok <= 3,
        "at most the budget's rest (and a refill) pass: {ok}"
    );
    let limited = statuses.iter().find(|r| r.status == 429).expect("a 429");
    assert_eq!(limited.problem_code(), 9002);
    assert_eq!(limited.header("retry-after"), Some("1"));
    // A refused order used no key: after a pause the same key places it.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let r = alice.post(ORDERS, Some("k"), &limit(SAMSUNG, "buy", 1, 119_000));
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["resent"], false);
}

#[test]
fn the_portfolio_is_valued_at_the_last_trade_as_computed_by_hand() {
    let t = node();
    let addr = t.http_addr();
    let admin = admin(addr);
    let alice_id = funded(addr, "alice", 0);
    let bob_id = funded(addr, "bob", 10_000_000);
    let r = admin.post(
        "/api/v1/admin/transfers-in",
        None,
        &json!({"account": alice_id, "symbol": SAMSUNG, "qty": 20, "price": 100_000, "external_ref": "in-1"}),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let (alice, bob) = (login(addr, alice_id), login(addr, bob_id));
    // Two trades: 5 @ 120,000 then 1 @ 121,000, Alice selling to Bob.
    for (i, (qty, price)) in [(5, 120_000), (1, 121_000)].into_iter().enumerate() {
        let s = alice.post(
            ORDERS,
            Some(&format!("s{i}")),
            &limit(SAMSUNG, "sell", qty, price),
        );
        assert_eq!(s.status, 201);
        let b = bob.post(
            ORDERS,
            Some(&format!("b{i}")),
            &limit(SAMSUNG, "buy", qty, price),
        );
        assert_eq!(b.status, 201);
        assert_eq!(b.json()["order"]["state"], "filled");
        assert_eq!(b.json()["executions"][0]["price"], price);
    }
    // Bob by hand: commission 150 ppm per order, floored.
    //   5 x 120,000 = 600,000 + floor(90.0) = 600,090;  1 x 121,000 + floor(18.15) = 121,018.
    let bob_cost = 600_090 + 121_018;
    let bob_cash = 10_000_000 - bob_cost;
    let bob_value = 6 * 121_000;
    let p = bob.get("/api/v1/portfolio").json();
    let pos = &p["positions"][0];
    assert_eq!(pos["symbol"], SAMSUNG);
    assert_eq!(pos["qty"], 6);
    assert_eq!(pos["cost_basis"], bob_cost);
    assert_eq!(pos["last_price"], 121_000);
    assert_eq!(pos["price_source"], "last_trade");
    assert_eq!(pos["market_value"], bob_value);
    assert_eq!(pos["unrealized_pnl"], bob_value - bob_cost);
    assert_eq!(pos["realized_pnl"], 0);
    let pct = (bob_value - bob_cost) as f64 / bob_cost as f64 * 100.0;
    assert!((pos["return_pct"].as_f64().unwrap() - pct).abs() < 1e-9);
    assert!((pos["average_cost"].as_f64().unwrap() - bob_cost as f64 / 6.0).abs() < 1e-9);
    assert_eq!(p["account"]["cash"], bob_cash);
    assert_eq!(p["market_value"], bob_value);
    assert_eq!(p["equity"], bob_cash + bob_value);
    assert_eq!(p["unrealized_pnl"], bob_value - bob_cost);

    // Alice by hand: 20 shares in at 100,000 (cost 2,000,000), 6 sold at the average cost.
    //   Sale 1: 600,000 - commission 90 - taxes floor(300.0) + floor(900.0) = 598,710 net;
    //           its cost 500,000: realized 98,710.
    //   Sale 2: 121,000 - 18 - (floor(60.5) + floor(181.5) = 241) = 120,741 net;
    //           its cost 100,000: realized 20,741.
    let alice_cost = 1_400_000;
    let alice_value = 14 * 121_000;
    let p = alice.get("/api/v1/portfolio").json();
    let pos = &p["positions"][0];
    assert_eq!(pos["qty"], 14);
    assert_eq!(pos["cost_basis"], alice_cost);
    assert_eq!(pos["market_value"], alice_value);
    assert_eq!(pos["unrealized_pnl"], alice_value - alice_cost);
    assert_eq!(pos["realized_pnl"], 98_710 + 20_741);
    assert_eq!(p["account"]["cash"], 598_710 + 120_741);
    assert_eq!(p["equity"], 598_710 + 120_741 + alice_value);
    // The admin sees the same valuation.
    let seen = admin
        .get(&format!("/api/v1/admin/accounts/{alice_id}"))
        .json();
    assert_eq!(seen, p);
    // Market data agrees: the last trades, newest first.
    let trades = alice
        .get(&format!("/api/v1/symbols/{SAMSUNG}/trades"))
        .json();
    assert_eq!(trades["trades"][0]["price"], 121_000);
    assert_eq!(trades["trades"][1]["qty"], 5);
    let quote = alice
        .get(&format!("/api/v1/symbols/{SAMSUNG}/quote"))
        .json();
    assert_eq!(quote["last_price"], 121_000);
}

#[test]
fn extremes_of_every_numeric_field_are_refused_and_the_node_lives_on() {
    let t = node();
    let addr = t.http_addr();
    let alice_id = funded(addr, "alice", 10_000_000);
    let alice = login(addr, alice_id);
    let extremes = [
        json!(i64::MAX),
        json!(i64::MIN),
        json!(-1),
        json!(0),
        json!(u64::MAX),
        json!(1e30),
        json!(1.5),
        json!("12"),
        json!(null),
        json!([1]),
    ];
    let mut n = 0;
    let mut key = || {
        n += 1;
        format!("e{n}")
    };
    for value in &extremes {
        for field in ["price", "qty"] {
            let mut body = limit(SAMSUNG, "buy", 1, 119_900);
            body[field] = value.clone();
            let r = alice.post(ORDERS, Some(&key()), &body);
            assert!(
                [400, 422].contains(&r.status),
                "{field}={value}: {}",
                r.status
            );
            r.problem_code();
            let mut modify = json!({"price": 119_900, "qty": 1});
            modify[field] = value.clone();
            let r = alice.send("PATCH", &format!("{ORDERS}/1"), Some(&key()), Some(&modify));
            assert!(
                [400, 404, 422].contains(&r.status),
                "modify {field}={value}: {}",
                r.status
            );
            r.problem_code();
        }
        for field in ["account", "amount"] {
            let mut body = json!({"account": alice_id, "amount": 1_000, "external_ref": key()});
            body[field] = value.clone();
            let r = admin(addr).post("/api/v1/admin/deposits", None, &body);
            assert!(
                [400, 404, 422].contains(&r.status),
                "deposit {field}={value}: {}",
                r.status
            );
            r.problem_code();
        }
    }
    for path in [
        format!("{ORDERS}/18446744073709551616"),
        format!("{ORDERS}/-1"),
        format!("{ORDERS}/abc"),
        format!("{ORDERS}?limit=0"),
        format!("{ORDERS}?limit=4294967296"),
        format!("{ORDERS}?after=-5"),
        format!("/api/v1/symbols/{SAMSUNG}/book?depth=11"),
        format!("/api/v1/symbols/{SAMSUNG}/trades?limit=0"),
    ] {
        let r = alice.get(&path);
        assert_eq!((r.status, r.problem_code()), (400, 9020), "{path}");
    }
    // A 1 MiB body.
    let big = vec![b' '; 1 << 20];
    let bearer = format!("Bearer {}", alice.bearer.clone().unwrap());
    let r = request(
        addr,
        "POST",
        ORDERS,
        &[("Authorization", &bearer), ("Idempotency-Key", "big")],
        Some(&big),
    );
    assert_eq!(r.status, 413);
    // The node lives, and nothing above took effect.
    let account = alice.get("/api/v1/account").json();
    assert_eq!(
        (account["cash"].as_i64(), account["held"].as_i64()),
        (Some(10_000_000), Some(0))
    );
    assert!(
        alice.get(&format!("{ORDERS}?state=all")).json()["orders"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        alice
            .post(ORDERS, Some("fine"), &limit(SAMSUNG, "buy", 1, 119_900))
            .status,
        201
    );
}

#[test]
fn orders_list_in_pages_and_modify_and_cancel_all_work() {
    let t = node();
    let addr = t.http_addr();
    let alice = login(addr, funded(addr, "alice", 100_000_000));
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = alice.post(
            ORDERS,
            Some(&format!("p{i}")),
            &limit(SAMSUNG, "buy", 1, 119_000 - i * 100),
        );
        ids.push(r.json()["order"]["order_id"].as_u64().unwrap());
    }
    let first = alice.get(&format!("{ORDERS}?limit=2")).json();
    let got: Vec<u64> = first["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids[..2]);
    let after = first["next_after"].as_u64().unwrap();
    let second = alice
        .get(&format!("{ORDERS}?limit=10&after={after}"))
        .json();
    assert_eq!(second["orders"].as_array().unwrap().len(), 3);
    assert!(second["next_after"].is_null());
    // Modify: a new price and open quantity.
    let path = format!("{ORDERS}/{}", ids[0]);
    let r = alice.send(
        "PATCH",
        &path,
        Some("m1"),
        Some(&json!({"price": 118_000, "qty": 3})),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["order"]["price"], 118_000);
    assert_eq!(r.json()["order"]["leaves"], 3);
    let r = alice.send(
        "PATCH",
        &path,
        Some("m2"),
        Some(&json!({"price": 118_000, "qty": 3})),
    );
    assert_eq!((r.status, r.problem_code()), (422, 2013));
    // Cancel all.
    let r = alice.post(
        &format!("{ORDERS}/cancel-all"),
        Some("ca"),
        &json!({"symbol": SAMSUNG}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["cancelled"], 5);
    assert!(
        alice.get(ORDERS).json()["orders"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        alice.get(&format!("{ORDERS}?state=all")).json()["orders"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // Market data.
    let book = alice
        .get(&format!("/api/v1/symbols/{SAMSUNG}/book?depth=1"))
        .json();
    assert!(book["bids"].as_array().unwrap().is_empty(), "{book}");
    let symbols = alice.get("/api/v1/symbols").json();
    assert!(
        symbols["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["code"] == SAMSUNG)
    );
    let market = alice.get("/api/v1/market").json();
    assert_eq!(market["phase"], "continuous");
    assert_eq!(market["commission_ppm"], 150);
}

#[test]
fn the_admin_endpoints_move_money_through_its_states() {
    let t = node();
    let addr = t.http_addr();
    let admin = admin(addr);
    let alice_id = funded(addr, "alice", 1_000_000);
    let w = admin.post(
        "/api/v1/admin/withdrawals",
        None,
        &json!({"account": alice_id, "amount": 300_000, "external_ref": "w1"}),
    );
    assert_eq!(w.status, 201);
    assert_eq!(w.json()["tx_status"], "pending");
    let tx = w.json()["tx_id"].as_u64().unwrap();
    let alice = login(addr, alice_id);
    assert_eq!(alice.get("/api/v1/account").json()["available"], 700_000);
    let c = admin.post(
        &format!("/api/v1/admin/transactions/{tx}/confirm"),
        None,
        &json!({}),
    );
    assert_eq!(c.status, 200);
    assert_eq!(c.json()["tx_status"], "posted");
    assert_eq!(alice.get("/api/v1/account").json()["cash"], 700_000);
    // The same withdrawal again is the same transaction; another amount under its ref is 409.
    let again = admin.post(
        "/api/v1/admin/withdrawals",
        None,
        &json!({"account": alice_id, "amount": 300_000, "external_ref": "w1"}),
    );
    assert_eq!(again.json()["resent"], true);
    let other = admin.post(
        "/api/v1/admin/withdrawals",
        None,
        &json!({"account": alice_id, "amount": 1, "external_ref": "w1"}),
    );
    assert_eq!((other.status, other.problem_code()), (409, 4008));
    // Fail a second one; reverse the first.
    let w2 = admin
        .post(
            "/api/v1/admin/withdrawals",
            None,
            &json!({"account": alice_id, "amount": 100, "external_ref": "w2"}),
        )
        .json();
    let f = admin.post(
        &format!("/api/v1/admin/transactions/{}/fail", w2["tx_id"]),
        None,
        &json!({}),
    );
    assert_eq!(f.json()["tx_status"], "failed");
    let r = admin.post(
        &format!("/api/v1/admin/transactions/{tx}/reverse"),
        None,
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(alice.get("/api/v1/account").json()["cash"], 1_000_000);
    let r = admin.post(
        "/api/v1/admin/transactions/999999/confirm",
        None,
        &json!({}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(admin.get("/api/v1/admin/accounts/0").status, 404);
    // A wrong admin token.
    let r = Api::new(addr).with_bearer(&"00".repeat(32)).post(
        "/api/v1/admin/accounts",
        None,
        &json!({"owner": "x"}),
    );
    assert_eq!((r.status, r.problem_code()), (401, 9010));
}

#[test]
fn the_served_openapi_document_is_the_committed_one() {
    let t = node();
    let r = request(t.http_addr(), "GET", "/api/v1/openapi.json", &[], None);
    assert_eq!(r.status, 200);
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json")).unwrap();
    assert!(
        r.body == committed,
        "docs/openapi.json differs from the served document"
    );
}

/// Two trades, Alice (20 shares transferred in at 100,000) selling to Bob: 5 @ 120,000 and
/// 1 @ 121,000. Returns the seq of the last order's command.
fn two_trades(addr: std::net::SocketAddr, alice: &Api, bob: &Api, alice_id: u32) -> u64 {
    let r = admin(addr).post(
        "/api/v1/admin/transfers-in",
        None,
        &json!({"account": alice_id, "symbol": SAMSUNG, "qty": 20, "price": 100_000, "external_ref": "in-1"}),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let mut seq = 0;
    for (i, (qty, price)) in [(5, 120_000), (1, 121_000)].into_iter().enumerate() {
        let s = alice.post(
            ORDERS,
            Some(&format!("s{i}")),
            &limit(SAMSUNG, "sell", qty, price),
        );
        assert_eq!(s.status, 201);
        let b = bob.post(
            ORDERS,
            Some(&format!("b{i}")),
            &limit(SAMSUNG, "buy", qty, price),
        );
        assert_eq!(b.status, 201);
        seq = b.json()["seq"].as_u64().unwrap();
    }
    seq
}

/// Waits until the query database holds every command up to `seq`.
fn history_at(api: &Api, path: &str, seq: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = api.get(path);
        assert_eq!(r.status, 200, "{}", r.json());
        let page = r.json();
        if page["checkpoint_seq"].as_u64().unwrap() >= seq {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database never caught up: {page}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn history_comes_from_the_database_for_the_account_only_and_in_pages() {
    let t = node();
    let addr = t.http_addr();
    let alice_id = funded(addr, "alice", 0);
    let bob_id = funded(addr, "bob", 10_000_000);
    let carol_id = funded(addr, "carol", 1_000);
    let (alice, bob, carol) = (
        login(addr, alice_id),
        login(addr, bob_id),
        login(addr, carol_id),
    );
    let seq = two_trades(addr, &alice, &bob, alice_id);

    // Alice's fills, from her side: she sold, as the maker; taxes by hand (see the portfolio
    // test): 300 + 900 on the first, 60 + 181 on the second.
    let page = history_at(&alice, "/api/v1/history/trades", seq);
    let trades = page["trades"].as_array().unwrap();
    assert_eq!(trades.len(), 2, "{page}");
    let got: Vec<(i64, i64, i64, i64)> = trades
        .iter()
        .map(|t| {
            assert_eq!(
                (t["side"].as_str(), t["liquidity"].as_str()),
                (Some("sell"), Some("maker"))
            );
            assert_eq!(t["symbol"], SAMSUNG);
            let n = |k: &str| t[k].as_i64().unwrap();
            (n("price"), n("qty"), n("commission"), n("tax"))
        })
        .collect();
    assert_eq!(got, [(120_000, 5, 90, 1_200), (121_000, 1, 18, 241)]);
    // Bob's, from his: bought, as the taker, no tax.
    let page = history_at(&bob, "/api/v1/history/trades?limit=1", seq);
    assert_eq!(page["trades"].as_array().unwrap().len(), 1);
    assert_eq!(page["trades"][0]["side"], "buy");
    assert_eq!(page["trades"][0]["liquidity"], "taker");
    assert_eq!(page["trades"][0]["tax"], 0);
    let after = page["next_after"].as_u64().expect("a second page");
    let second = bob
        .get(&format!("/api/v1/history/trades?after={after}"))
        .json();
    assert_eq!(second["trades"].as_array().unwrap().len(), 1);
    assert_eq!(second["trades"][0]["price"], 121_000);
    assert!(second["next_after"].is_null());
    // Carol traded nothing and sees nothing of theirs.
    let page = history_at(&carol, "/api/v1/history/trades", seq);
    assert!(page["trades"].as_array().unwrap().is_empty(), "{page}");
    let page = history_at(&carol, "/api/v1/history/transactions", seq);
    let txs = page["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 1, "her deposit only: {page}");
    assert_eq!(txs[0]["tx_type"], "DEPOSIT");

    // Alice's ledger: the transfer in, then the two trades; every transaction balances per
    // asset.
    let page = history_at(&alice, "/api/v1/history/transactions", seq);
    let txs = page["transactions"].as_array().unwrap();
    let types: Vec<&str> = txs.iter().map(|t| t["tx_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADJUSTMENT", "TRADE", "TRADE"], "{page}");
    for tx in txs {
        let mut sums = std::collections::BTreeMap::<String, i64>::new();
        for e in tx["entries"].as_array().unwrap() {
            *sums
                .entry(e["asset"].as_str().unwrap().to_owned())
                .or_default() += e["amount"].as_i64().unwrap();
        }
        assert!(!sums.is_empty() && sums.values().all(|&s| s == 0), "{tx}");
    }
    for path in [
        "/api/v1/history/trades?limit=0",
        "/api/v1/history/transactions?limit=501",
        "/api/v1/history/trades?after=-1",
    ] {
        let r = alice.get(path);
        assert_eq!((r.status, r.problem_code()), (400, 9020), "{path}");
    }
}

#[test]
fn without_a_query_database_history_is_503() {
    let t = TestNode::start_http_with(|c| c.database_url = Some("none".into()));
    let addr = t.http_addr();
    let alice = login(addr, funded(addr, "alice", 1_000));
    let r = alice.get("/api/v1/history/trades");
    assert_eq!((r.status, r.problem_code()), (503, 9027));
}

#[test]
fn the_admin_lists_a_symbol_and_sets_the_fees_between_trading_days() {
    let t =
        TestNode::start_http_with(|c| c.schedule = kuku_server::scheduler::ScheduleMode::Manual);
    let addr = t.http_addr();
    let admin = admin(addr);
    let symbol = json!({"code": "KUKU1", "name": "Kuku Test", "market": "kosdaq", "tick_kind": "fixed",
                        "tick": 5, "base_price": 1_000, "banded": true, "lot_size": 1});
    let r = admin.post("/api/v1/admin/symbols", None, &symbol);
    assert_eq!(r.status, 201, "{}", r.json());
    let id = r.json()["symbol_id"].as_u64().unwrap();
    assert!(id > 0);
    let r = admin.post("/api/v1/admin/symbols", None, &symbol);
    assert_eq!((r.status, r.problem_code()), (409, 1002));
    let mut krx_with_tick = symbol.clone();
    krx_with_tick["code"] = json!("KUKU2");
    krx_with_tick["tick_kind"] = json!("krx");
    let r = admin.post("/api/v1/admin/symbols", None, &krx_with_tick);
    assert_eq!((r.status, r.problem_code()), (400, 1004));
    let mut long = symbol.clone();
    long["code"] = json!("TOOLONGCODE");
    assert_eq!(
        admin
            .post("/api/v1/admin/symbols", None, &long)
            .problem_code(),
        1003
    );
    let alice = login(addr, funded(addr, "alice", 1_000));
    let listed = alice.get("/api/v1/symbols/KUKU1").json();
    assert_eq!(
        (listed["symbol_id"].as_u64(), listed["market"].as_str()),
        (Some(id), Some("kosdaq"))
    );

    let fees = json!({"commission_ppm": 100, "kospi_securities_transaction_ppm": 500,
        "kospi_rural_special_ppm": 1_500, "kosdaq_securities_transaction_ppm": 2_000,
        "kosdaq_rural_special_ppm": 0, "other_securities_transaction_ppm": 0, "other_rural_special_ppm": 0});
    let r = admin.send("PUT", "/api/v1/admin/fees", None, Some(&fees));
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(alice.get("/api/v1/market").json()["commission_ppm"], 100);
    let mut bad = fees.clone();
    bad["commission_ppm"] = json!(2_000_000);
    let r = admin.send("PUT", "/api/v1/admin/fees", None, Some(&bad));
    assert_eq!((r.status, r.problem_code()), (422, 1011));
}
