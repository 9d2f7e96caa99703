//! The `kuku client` and `kuku admin` command lines (clap derive); `kuku`'s main only
//! dispatches here. Output is one readable line per fact, amounts with thousands separators.
//!
//! Credentials: `kuku client` takes `--account` and `--token` (or `KUKU_ACCOUNT`,
//! `KUKU_TOKEN`); `kuku admin` takes `--admin-token` (or `KUKU_ADMIN_TOKEN`), else reads
//! the file `kuku serve` wrote (`--secrets`, default `kuku-data/gateway-secrets.toml`).

use crate::auth::{Credentials, decode_hex32, encode_hex};
use crate::client::{
    AccountView, AdminClient, LoginOptions, OrderSpec, ReferenceView, TradingClient,
};
use crate::protocol::*;
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use kuku_engine::{
    AccountId, Amount, ClientOrderId, FeeSchedule, Market, OrderId, Price, Qty, Side, TaxRates,
    TickRule, TimeInForce, TxId,
};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The gateway's address.
    #[arg(long, env = "KUKU_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// The trading account.
    #[arg(long, env = "KUKU_ACCOUNT")]
    pub account: u32,
    /// The account's token (64 hex digits, from `kuku admin issue-token`).
    #[arg(long, env = "KUKU_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Cancel the account's live orders when this session ends.
    #[arg(long)]
    pub cancel_on_disconnect: bool,
    #[command(subcommand)]
    pub command: ClientCmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TifArg {
    Day,
    Ioc,
    Fok,
}

#[derive(Args, Debug)]
pub struct OrderArgs {
    /// The 6-character KRX code, e.g. 005930.
    pub symbol: String,
    /// Shares.
    pub qty: i64,
    /// Limit price in KRW; without it, a MARKET order.
    #[arg(long)]
    pub price: Option<i64>,
    /// Time in force (default: DAY for limit orders, IOC for market orders).
    #[arg(long, value_enum)]
    pub tif: Option<TifArg>,
    /// The client order id (default: a fresh one). Resending the same id returns the
    /// original outcome.
    #[arg(long)]
    pub client_order_id: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Buy shares.
    Buy(OrderArgs),
    /// Sell shares.
    Sell(OrderArgs),
    /// Cancel one order.
    Cancel { order_id: u64 },
    /// Cancel every live order (of one symbol).
    CancelAll { symbol: Option<String> },
    /// Set an order's open quantity and/or price.
    Modify {
        order_id: u64,
        /// The new open quantity, what may still fill (default: unchanged); the order's size
        /// becomes what filled plus this.
        #[arg(long)]
        qty: Option<i64>,
        /// The new price (default: unchanged).
        #[arg(long)]
        price: Option<i64>,
    },
    /// One order's state.
    Status { order_id: u64 },
    /// Live orders.
    Orders { symbol: Option<String> },
    /// Cash, holds and available cash.
    Balance,
    /// Positions.
    Positions,
    /// The trading day, phase, fees, and the listed symbols with their market, base price,
    /// band, tick rule and lot size.
    Symbols {
        /// Only this symbol.
        symbol: Option<String>,
    },
    /// Stream the account's messages (executions, cancels, ...).
    Watch {
        /// Replay from after this per-account sequence number (default: live only).
        #[arg(long)]
        from_seq: Option<u64>,
        /// Stop after this many seconds (default: until interrupted).
        #[arg(long)]
        seconds: Option<u64>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The gateway's address.
    #[arg(long, env = "KUKU_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// The admin token (64 hex digits); default: read from --secrets.
    #[arg(long, env = "KUKU_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The credentials file `kuku serve` wrote.
    #[arg(
        long,
        env = "KUKU_GATEWAY_SECRETS",
        default_value = "kuku-data/gateway-secrets.toml"
    )]
    pub secrets: PathBuf,
    #[command(subcommand)]
    pub command: AdminCmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MarketArg {
    Kospi,
    Kosdaq,
    Other,
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Open a trading account for an owner key (resending the key returns the same account).
    OpenAccount { owner: String },
    /// Post a deposit.
    Deposit {
        account: u32,
        amount: i64,
        /// The bank's reference, unique per account (default: a fresh one).
        #[arg(long = "ref")]
        external_ref: Option<String>,
    },
    /// Create a PENDING withdrawal.
    Withdraw {
        account: u32,
        amount: i64,
        #[arg(long = "ref")]
        external_ref: Option<String>,
    },
    /// Confirm a PENDING or UNKNOWN transaction.
    Confirm { tx: u64 },
    /// Fail a PENDING or UNKNOWN transaction.
    Fail { tx: u64 },
    /// Reverse a POSTED deposit, withdrawal, adjustment or transfer of shares.
    Reverse { tx: u64 },
    /// Shares arrive from outside (e.g. another broker), carrying their cost basis.
    TransferIn {
        account: u32,
        /// The symbol's code, e.g. 005930.
        symbol: String,
        /// Shares.
        qty: i64,
        /// What each share cost, in KRW (0: no cost); the position's cost basis grows by
        /// price x qty.
        #[arg(long)]
        price: i64,
        /// The transfer's reference, unique per account (default: a fresh one).
        #[arg(long = "ref")]
        external_ref: Option<String>,
    },
    /// Shares leave to outside (they take their average cost out of the cost basis).
    TransferOut {
        account: u32,
        symbol: String,
        qty: i64,
        #[arg(long = "ref")]
        external_ref: Option<String>,
    },
    /// The trading day, phase, fees, and the listed symbols.
    Symbols { symbol: Option<String> },
    /// List a symbol.
    RegisterSymbol {
        code: String,
        name: String,
        #[arg(long, value_enum, default_value = "kospi")]
        market: MarketArg,
        /// Base price in KRW (on the tick grid).
        #[arg(long)]
        base_price: i64,
        /// A fixed tick size (default: the KRX table).
        #[arg(long)]
        tick: Option<i64>,
        /// No daily +-30% band.
        #[arg(long)]
        no_band: bool,
        #[arg(long, default_value_t = 1)]
        lot: i64,
    },
    /// Set commission and tax rates (parts per million; defaults: the 2026 schedule).
    SetFees {
        #[arg(long, default_value_t = 150)]
        commission_ppm: i64,
        #[arg(long, default_value_t = 500)]
        kospi_stt_ppm: i64,
        #[arg(long, default_value_t = 1_500)]
        kospi_rural_ppm: i64,
        #[arg(long, default_value_t = 2_000)]
        kosdaq_stt_ppm: i64,
        #[arg(long, default_value_t = 0)]
        kosdaq_rural_ppm: i64,
        #[arg(long, default_value_t = 0)]
        other_stt_ppm: i64,
        #[arg(long, default_value_t = 0)]
        other_rural_ppm: i64,
    },
    /// Print an account's login token.
    IssueToken { account: u32 },
    /// An account's balances and positions.
    Balance { account: u32 },
}

/// 1234567 -> "1,234,567".
pub fn krw(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn code_arg(s: &str) -> anyhow::Result<Code> {
    Code::new(s).with_context(|| format!("{s:?} is not a 1-6 character symbol code"))
}

fn text<const N: usize>(s: &str, what: &str) -> anyhow::Result<kuku_engine::InlineStr<N>> {
    if s.contains('\0') {
        bail!("the {what} must not contain NUL");
    }
    kuku_engine::InlineStr::new(s).with_context(|| format!("the {what} is longer than {N} bytes"))
}

fn fresh_ref() -> String {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("cli-{us}")
}

/// Runs `kuku client ...`.
pub fn run_client(args: ClientArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let token = decode_hex32(&args.token).context("--token")?;
    let from_seq = match &args.command {
        ClientCmd::Watch { from_seq, .. } => *from_seq,
        _ => None,
    };
    let options = LoginOptions {
        last_seen_acct_seq: from_seq.unwrap_or(0),
        cancel_on_disconnect: args.cancel_on_disconnect,
        no_replay: from_seq.is_none(),
    };
    let (mut client, replayed) =
        TradingClient::login(args.addr.as_str(), AccountId(args.account), token, options)
            .with_context(|| format!("cannot log in to {}", args.addr))?;
    for m in &replayed {
        writeln!(out, "{}", describe(m))?;
    }
    match args.command {
        ClientCmd::Buy(o) => order(&mut client, Side::Buy, o, out)?,
        ClientCmd::Sell(o) => order(&mut client, Side::Sell, o, out)?,
        ClientCmd::Cancel { order_id } => {
            let reply = client.cancel(OrderId(order_id))?;
            writeln!(out, "{}", describe(&reply))?;
        }
        ClientCmd::CancelAll { symbol } => {
            let symbol = symbol.as_deref().map(code_arg).transpose()?;
            let reply = client.cancel_all(symbol)?;
            while let Some(m) = client.next_message(Duration::ZERO)? {
                writeln!(out, "{}", describe(&m))?;
            }
            writeln!(out, "{}", describe(&reply))?;
        }
        ClientCmd::Modify {
            order_id,
            qty,
            price,
        } => {
            let current = match client.order_status(OrderId(order_id))? {
                Ok(r) => r,
                Err(code) => bail!("order {order_id}: {}", describe_code(code)),
            };
            let reply = client.modify(
                OrderId(order_id),
                Qty(qty.unwrap_or(current.leaves.0)),
                Price(price.unwrap_or(current.price.0)),
            )?;
            writeln!(out, "{}", describe(&reply))?;
        }
        ClientCmd::Status { order_id } => match client.order_status(OrderId(order_id))? {
            Ok(r) => writeln!(out, "{}", describe(&r.into()))?,
            Err(code) => writeln!(out, "order {order_id}: {}", describe_code(code))?,
        },
        ClientCmd::Orders { symbol } => {
            let symbol = symbol.as_deref().map(code_arg).transpose()?;
            let (reports, code) = client.open_orders(symbol)?;
            for r in &reports {
                writeln!(out, "{}", describe(&(*r).into()))?;
            }
            writeln!(out, "{} live order(s)", reports.len())?;
            if code != 0 {
                writeln!(out, "note: {}", describe_code(code))?;
            }
        }
        ClientCmd::Balance => print_balance(&client.account()?, out)?,
        ClientCmd::Positions => print_positions(&client.account()?, out)?,
        ClientCmd::Symbols { symbol } => {
            let symbol = symbol.as_deref().map(code_arg).transpose()?;
            print_reference(&client.reference(symbol)?, out)?;
        }
        ClientCmd::Watch { seconds, count, .. } => watch(&mut client, seconds, count, out)?,
    }
    Ok(())
}

fn order(
    client: &mut TradingClient,
    side: Side,
    o: OrderArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let symbol = code_arg(&o.symbol)?;
    let mut spec = match o.price {
        Some(p) => OrderSpec::limit(symbol, side, Qty(o.qty), Price(p)),
        None => OrderSpec::market(symbol, side, Qty(o.qty)),
    };
    if let Some(tif) = o.tif {
        spec.tif = match tif {
            TifArg::Day => TimeInForce::Day,
            TifArg::Ioc => TimeInForce::Ioc,
            TifArg::Fok => TimeInForce::Fok,
        };
    }
    spec.client_order_id = o.client_order_id.map(ClientOrderId);
    let reply = client.place(spec)?;
    writeln!(out, "{}", describe(&reply))?;
    // Fills and cancels that arrive right away (IOC, MARKET, crossing orders).
    while let Some(m) = client.next_message(Duration::from_millis(200))? {
        writeln!(out, "{}", describe(&m))?;
    }
    Ok(())
}

fn watch(
    client: &mut TradingClient,
    seconds: Option<u64>,
    count: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut seen = 0u64;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                left.min(Duration::from_secs(1))
            }
            None => Duration::from_secs(1),
        };
        if let Some(m) = client.next_message(wait)? {
            writeln!(out, "{}", describe(&m))?;
            out.flush()?;
            seen += 1;
        }
    }
}

fn print_balance(v: &AccountView, out: &mut impl Write) -> anyhow::Result<()> {
    let s = &v.snapshot;
    writeln!(
        out,
        "account {}: cash {} KRW, held {} KRW, available {} KRW (seq {})",
        s.account,
        krw(s.cash.0),
        krw(s.cash_hold.0),
        krw(s.available.0),
        s.acct_seq
    )?;
    Ok(())
}

fn print_reference(v: &ReferenceView, out: &mut impl Write) -> anyhow::Result<()> {
    if let Some(m) = &v.market {
        writeln!(out, "{}", describe(&(*m).into()))?;
    }
    for s in &v.symbols {
        writeln!(out, "{}", describe(&(*s).into()))?;
    }
    if v.code != 0 {
        bail!("{}", describe_code(v.code));
    }
    Ok(())
}

fn print_positions(v: &AccountView, out: &mut impl Write) -> anyhow::Result<()> {
    if v.positions.is_empty() {
        writeln!(out, "account {}: no positions", v.snapshot.account)?;
    }
    for p in &v.positions {
        writeln!(out, "{}", describe(&(*p).into()))?;
    }
    Ok(())
}

fn symbol(c: &Option<Code>) -> String {
    c.map_or_else(|| "-".to_owned(), |c| c.to_string())
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

/// One readable line for a message.
pub fn describe(m: &Message) -> String {
    match m {
        Message::OrderAccepted(a) => format!(
            "[{}] accepted order {} (client id {}): {} {} {} {} {:?}{}",
            a.acct_seq,
            a.order_id,
            a.client_order_id,
            side(a.side),
            krw(a.qty.0),
            symbol(&a.symbol),
            match a.order_type {
                kuku_engine::OrderType::Market => "MARKET".to_string(),
                kuku_engine::OrderType::Limit => format!("LIMIT @ {} KRW", krw(a.price.0)),
            },
            a.tif,
            if a.resent {
                " (resent: original outcome)"
            } else {
                ""
            }
        ),
        Message::OrderRejected(r) => format!(
            "[{}] rejected client id {} on {}: {}{}",
            r.acct_seq,
            r.client_order_id,
            symbol(&r.symbol),
            describe_code(r.reason),
            if r.resent {
                " (resent: original outcome)"
            } else {
                ""
            }
        ),
        Message::Execution(e) => format!(
            "[{}] FILL order {} (client id {}): {} {} {} @ {} KRW, leaves {}, commission {}, tax {} ({:?}, trade {})",
            e.acct_seq,
            e.order_id,
            e.client_order_id,
            side(e.side),
            krw(e.qty.0),
            symbol(&e.symbol),
            krw(e.price.0),
            krw(e.leaves.0),
            krw(e.commission.0),
            krw(e.tax.0),
            e.liquidity,
            e.trade_id
        ),
        Message::Cancelled(c) => format!(
            "[{}] cancelled order {} (client id {}) on {}: {} shares, {:?}",
            c.acct_seq,
            c.order_id,
            c.client_order_id,
            symbol(&c.symbol),
            krw(c.qty_cancelled.0),
            c.reason
        ),
        Message::Modified(x) => format!(
            "[{}] modified order {}: leaves {} @ {} KRW{}",
            x.acct_seq,
            x.order_id,
            krw(x.leaves.0),
            krw(x.price.0),
            if x.priority_kept {
                " (priority kept)"
            } else {
                " (priority lost)"
            }
        ),
        Message::RequestRejected(r) => format!(
            "[{}] {:?} request {} (order {}) rejected: {}",
            r.acct_seq,
            r.request,
            r.request_id,
            r.order_id,
            describe_code(r.reason)
        ),
        Message::RequestResent(r) => format!(
            "[{}] {:?} request {} was a resend (original outcome: {}, cancelled {})",
            r.acct_seq,
            r.request,
            r.request_id,
            describe_code(r.outcome_code),
            r.cancelled
        ),
        Message::CancelAllDone(d) => format!(
            "[{}] cancel-all {} done: {} order(s) cancelled",
            d.acct_seq, d.request_id, d.cancelled
        ),
        Message::TransactionUpdate(t) => format!(
            "[{}] transaction {} {:?} {} {}: {:?} -> {:?} (ref {}){}",
            t.acct_seq,
            t.tx_id,
            t.tx_type,
            krw(t.amount.0),
            t.asset.map_or_else(|| "KRW".to_owned(), |c| c.to_string()),
            t.from,
            t.to,
            t.external_ref,
            if t.resent { " (resent)" } else { "" }
        ),
        Message::AccountOpened(a) => format!(
            "[{}] account {} opened for {:?}",
            a.acct_seq, a.account, a.owner
        ),
        Message::CommandRejected(c) => format!(
            "[{}] {:?} rejected: {}",
            c.acct_seq,
            c.command,
            describe_code(c.reason)
        ),
        Message::OrderReport(r) => format!(
            "order {} (client id {}): {} {} {:?}/{:?} @ {} KRW, qty {}, filled {}, leaves {}, cancelled {}, {:?}",
            r.order_id,
            r.client_order_id,
            side(r.side),
            symbol(&r.symbol),
            r.order_type,
            r.tif,
            krw(r.price.0),
            krw(r.qty.0),
            krw(r.filled.0),
            krw(r.leaves.0),
            krw(r.cancelled.0),
            r.state
        ),
        Message::MarketReport(m) => format!(
            "trading day {}, {:?}; commission {} ppm; sell taxes KOSPI {} + {} ppm, KOSDAQ {} + {} ppm, other {} + {} ppm",
            m.trading_day,
            m.phase,
            m.commission_ppm,
            m.kospi_securities_transaction_ppm,
            m.kospi_rural_special_ppm,
            m.kosdaq_securities_transaction_ppm,
            m.kosdaq_rural_special_ppm,
            m.other_securities_transaction_ppm,
            m.other_rural_special_ppm
        ),
        Message::SymbolReport(s) => {
            let tick = match s.tick_rule.kind {
                TickKind::Krx => "KRX ticks".to_owned(),
                TickKind::Fixed => format!("tick {}", krw(s.tick_rule.tick)),
            };
            let band = if s.banded {
                format!("band {}..{}", krw(s.lower_limit.0), krw(s.upper_limit.0))
            } else {
                "no band".to_owned()
            };
            let last = if s.last_price.0 == 0 {
                "no trade yet".to_owned()
            } else {
                format!("last {}", krw(s.last_price.0))
            };
            format!(
                "{} {:?} ({:?}, id {}): base {} KRW, {band}, {tick}, lot {}, {last}",
                symbol(&s.code),
                s.name.as_str(),
                s.market,
                s.symbol_id,
                krw(s.base_price.0),
                krw(s.lot_size.0)
            )
        }
        Message::PositionReport(p) => format!(
            "{}: {} shares ({} held), cost {} KRW, realized {} KRW",
            symbol(&p.symbol),
            krw(p.qty.0),
            krw(p.qty_hold.0),
            krw(p.cost_basis.0),
            krw(p.realized_pnl.0)
        ),
        other => format!("{other:?}"),
    }
}

fn admin_token(args: &AdminArgs) -> anyhow::Result<[u8; 32]> {
    match &args.admin_token {
        Some(hex) => decode_hex32(hex).context("--admin-token"),
        None => Ok(Credentials::load(&args.secrets)
            .context("no --admin-token (or KUKU_ADMIN_TOKEN), and the secrets file is unreadable")?
            .admin_token),
    }
}

/// Runs `kuku admin ...`.
pub fn run_admin(args: AdminArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let token = admin_token(&args)?;
    let mut admin = AdminClient::login(args.addr.as_str(), token)
        .with_context(|| format!("cannot log in to {} as admin", args.addr))?;
    let result = match args.command {
        AdminCmd::OpenAccount { owner } => admin.open_account(text(&owner, "owner")?)?,
        AdminCmd::Deposit {
            account,
            amount,
            external_ref,
        } => {
            let r = external_ref.unwrap_or_else(fresh_ref);
            admin.deposit(AccountId(account), Amount(amount), text::<32>(&r, "ref")?)?
        }
        AdminCmd::Withdraw {
            account,
            amount,
            external_ref,
        } => {
            let r = external_ref.unwrap_or_else(fresh_ref);
            admin.withdraw(AccountId(account), Amount(amount), text::<32>(&r, "ref")?)?
        }
        AdminCmd::Confirm { tx } => admin.confirm(TxId(tx))?,
        AdminCmd::Fail { tx } => admin.fail(TxId(tx))?,
        AdminCmd::Reverse { tx } => admin.reverse(TxId(tx))?,
        AdminCmd::TransferIn {
            account,
            symbol,
            qty,
            price,
            external_ref,
        } => {
            let r = external_ref.unwrap_or_else(fresh_ref);
            admin.transfer_in(
                AccountId(account),
                code_arg(&symbol)?,
                Qty(qty),
                Price(price),
                text::<32>(&r, "ref")?,
            )?
        }
        AdminCmd::TransferOut {
            account,
            symbol,
            qty,
            external_ref,
        } => {
            let r = external_ref.unwrap_or_else(fresh_ref);
            admin.transfer_out(
                AccountId(account),
                code_arg(&symbol)?,
                Qty(qty),
                text::<32>(&r, "ref")?,
            )?
        }
        AdminCmd::Symbols { symbol } => {
            let symbol = symbol.as_deref().map(code_arg).transpose()?;
            return print_reference(&admin.reference(symbol)?, out);
        }
        AdminCmd::RegisterSymbol {
            code,
            name,
            market,
            base_price,
            tick,
            no_band,
            lot,
        } => admin.register_symbol(
            code_arg(&code)?,
            text::<48>(&name, "name")?,
            match market {
                MarketArg::Kospi => Market::Kospi,
                MarketArg::Kosdaq => Market::Kosdaq,
                MarketArg::Other => Market::Other,
            },
            tick.map_or(TickRule::Krx, TickRule::Fixed),
            Price(base_price),
            !no_band,
            Qty(lot),
        )?,
        AdminCmd::SetFees {
            commission_ppm,
            kospi_stt_ppm,
            kospi_rural_ppm,
            kosdaq_stt_ppm,
            kosdaq_rural_ppm,
            other_stt_ppm,
            other_rural_ppm,
        } => admin.set_fees(FeeSchedule {
            commission_ppm,
            kospi: TaxRates {
                securities_transaction_ppm: kospi_stt_ppm,
                rural_special_ppm: kospi_rural_ppm,
            },
            kosdaq: TaxRates {
                securities_transaction_ppm: kosdaq_stt_ppm,
                rural_special_ppm: kosdaq_rural_ppm,
            },
            other: TaxRates {
                securities_transaction_ppm: other_stt_ppm,
                rural_special_ppm: other_rural_ppm,
            },
        })?,
        AdminCmd::IssueToken { account } => {
            match admin.issue_token(AccountId(account))? {
                Ok(token) => writeln!(out, "{}", encode_hex(&token))?,
                Err(code) => bail!("account {account}: {}", describe_code(code)),
            }
            return Ok(());
        }
        AdminCmd::Balance { account } => {
            let v = admin.account(AccountId(account))?;
            print_balance(&v, out)?;
            return print_positions(&v, out);
        }
    };
    writeln!(out, "{}", describe_admin(&result))?;
    if result.code != 0 {
        bail!("rejected: {}", describe_code(result.code));
    }
    Ok(())
}

/// One readable line for an AdminResult.
pub fn describe_admin(r: &AdminResult) -> String {
    let what = match r.request_type {
        OpenAccount::TYPE => "open-account",
        Deposit::TYPE => "deposit",
        Withdraw::TYPE => "withdraw",
        ConfirmTransaction::TYPE => "confirm",
        FailTransaction::TYPE => "fail",
        ReverseTransaction::TYPE => "reverse",
        RegisterSymbol::TYPE => "register-symbol",
        SetFeeSchedule::TYPE => "set-fees",
        IssueToken::TYPE => "issue-token",
        TransferIn::TYPE => "transfer-in",
        TransferOut::TYPE => "transfer-out",
        _ => "request",
    };
    if r.code != 0 {
        return format!("{what}: REJECTED {}", describe_code(r.code));
    }
    let mut line = format!("{what}: OK");
    if r.account.0 != 0 {
        line += &format!(", account {}", r.account);
    }
    if r.tx_id.0 != 0 {
        line += &format!(", transaction {}", r.tx_id);
    }
    if let Some(s) = r.tx_status {
        line += &format!(" ({s:?})");
    }
    if r.symbol_id != 0 {
        line += &format!(", symbol id {}", r.symbol_id);
    }
    if r.resent {
        line += " (resent: nothing new was done)";
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn krw_groups_thousands() {
        assert_eq!(krw(0), "0");
        assert_eq!(krw(999), "999");
        assert_eq!(krw(1_000), "1,000");
        assert_eq!(krw(-71_000_000), "-71,000,000");
    }
}
