//! `kuku demo`: a whole node in-process with embedded defaults (a temporary data directory,
//! the demo universe, the simulated feed, the market open), driven through a readable
//! end-to-end scenario: open an account, deposit, buy, a partial fill, sell, cancel, a
//! withdrawal pending then confirmed, a reversal; then the portfolio and the trial balance.

use crate::config::NodeConfig;
use crate::local::{LocalClient, Router};
use crate::node::{Node, NodeOutputs};
use crate::scheduler::ScheduleMode;
use anyhow::{Context, bail};
use kuku_engine::readmodel::ReadModel;
use kuku_engine::testkit::cmd;
use kuku_engine::*;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Formats KRW with thousands separators.
pub fn krw(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 { format!("-{out}") } else { out }
}

pub struct DemoOptions {
    pub data_dir: Option<PathBuf>,
    pub feed_interval_ms: u64,
}

/// Runs the scenario, writing a readable transcript to `out`.
pub fn run(options: DemoOptions, out: &mut impl Write) -> anyhow::Result<()> {
    let temp;
    let data_dir = match options.data_dir {
        Some(d) => d,
        None => {
            temp = tempdir()?;
            temp.clone()
        }
    };
    let config = NodeConfig {
        data_dir: data_dir.clone(),
        durability: "none".into(),
        schedule: ScheduleMode::AlwaysOpen,
        snapshot_every: 0,
        feed: crate::config::FeedSettings {
            interval_ms: options.feed_interval_ms,
            ..Default::default()
        },
        ..NodeConfig::default()
    };
    let router = Router::default();
    let node = Node::start(
        &config,
        NodeOutputs {
            handlers: vec![("kuku-demo-router", router.handler())],
            ..Default::default()
        },
    )?;
    writeln!(
        out,
        "Kuku demo: a mock KRX broker on an LMAX-style core, all in one process."
    )?;
    writeln!(
        out,
        "  data directory: {} (journal, snapshots)",
        data_dir.display()
    )?;
    writeln!(
        out,
        "  market: demo universe, simulated quotes, continuous session open\n"
    )?;
    let mut client = router.client(1, node.submitter.clone());
    let result = scenario(&node, &mut client, out);
    // The client holds a submitter: the pipeline drains only once every submitter is gone.
    drop(client);
    let seq = node.shutdown();
    writeln!(
        out,
        "\nThe node shut down cleanly after command #{seq}; everything is in the journal."
    )?;
    result
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "kuku-demo-{}-{}",
        std::process::id(),
        crate::pipeline::now_ns() % 1_000_000
    ));
    std::fs::create_dir_all(&dir).context("cannot create a temporary data directory")?;
    Ok(dir)
}

fn step(out: &mut impl Write, n: u32, text: &str) -> std::io::Result<()> {
    writeln!(out, "[{n}] {text}")
}

fn scenario(node: &Node, c: &mut LocalClient, out: &mut impl Write) -> anyhow::Result<()> {
    let e = c.request(cmd::open_account("demo-trader"), REPLY_TIMEOUT)?;
    let Some(Event::AccountOpened { account, .. }) = e.first().copied() else {
        bail!("the account did not open: {e:?}");
    };
    step(
        out,
        1,
        &format!("Opened trading account #{account} for \"demo-trader\"."),
    )?;

    let e = c.request(
        cmd::deposit(account, 300_000_000, "demo-deposit-1"),
        REPLY_TIMEOUT,
    )?;
    expect_status(&e, TxStatus::Posted)?;
    step(
        out,
        2,
        "Deposited 300,000,000 KRW: the DEPOSIT transaction is POSTED.",
    )?;

    let (symbol, name, bid, ask) = wait_for_quote(node, "005930")?;
    step(
        out,
        3,
        &format!(
            "The simulated feed quotes 005930 {name}: bid {} x {} / ask {} x {} (SYSTEM_MARKET).",
            krw(bid.0.0),
            bid.1.0,
            krw(ask.0.0),
            ask.1.0
        ),
    )?;

    let e = c.request(
        cmd::limit(account, 1, symbol.0, Side::Buy, ask.0.0, 10),
        REPLY_TIMEOUT,
    )?;
    step(
        out,
        4,
        &format!("BUY 10 at {} (limit): {}", krw(ask.0.0), describe_order(&e)),
    )?;

    let (_, _, _, ask) = wait_for_quote(node, "005930")?;
    let big = ask.1.0 + 200;
    let e = c.request(
        cmd::limit(account, 2, symbol.0, Side::Buy, ask.0.0, big),
        REPLY_TIMEOUT,
    )?;
    let resting = accepted(&e);
    step(
        out,
        5,
        &format!(
            "BUY {big} at {} (more than the ask shows): {}",
            krw(ask.0.0),
            describe_order(&e)
        ),
    )?;

    if let Some(id) = resting {
        let e = c.request(cmd::cancel(account, 4, id.0), REPLY_TIMEOUT)?;
        step(
            out,
            6,
            &format!("CANCEL order #{id}: {}", describe_order(&e)),
        )?;
    }

    let e = c.request(
        cmd::market(account, 3, symbol.0, Side::Sell, 5),
        REPLY_TIMEOUT,
    )?;
    step(out, 7, &format!("SELL 5 at market: {}", describe_order(&e)))?;

    let e = c.request(
        cmd::withdraw(account, 1_000_000, "demo-withdrawal-1"),
        REPLY_TIMEOUT,
    )?;
    let tx = expect_status(&e, TxStatus::Pending)?;
    step(
        out,
        8,
        &format!("Withdrew 1,000,000 KRW: tx {tx} is PENDING and its cash is held."),
    )?;
    let e = c.request(Command::ConfirmTransaction { tx }, REPLY_TIMEOUT)?;
    expect_status(&e, TxStatus::Posted)?;
    writeln!(
        out,
        "    The bank confirmed it: PENDING -> POSTED, the hold became a debit."
    )?;

    let e = c.request(
        cmd::deposit(account, 500_000, "demo-promo-1"),
        REPLY_TIMEOUT,
    )?;
    let promo = expect_status(&e, TxStatus::Posted)?;
    let e = c.request(Command::ReverseTransaction { tx: promo }, REPLY_TIMEOUT)?;
    let reversal = e.iter().find_map(|e| match e {
        Event::TransactionStatusChanged {
            tx,
            tx_type: TxType::Reversal,
            ..
        } => Some(*tx),
        _ => None,
    });
    step(
        out,
        9,
        &format!(
            "Deposited 500,000 KRW by mistake (tx {promo}) and reversed it: REVERSAL tx {} posted, tx {promo} is REVERSED.",
            reversal.map_or("?".to_owned(), |t| t.to_string())
        ),
    )?;

    let rm = node.read_model.read();
    print_portfolio(&rm, account, out)?;
    print_trial_balance(&rm, out)?;
    Ok(())
}

fn accepted(events: &[Event]) -> Option<OrderId> {
    events.iter().find_map(|e| match e {
        Event::OrderAccepted { order, .. } => Some(order.order_id),
        _ => None,
    })
}

/// One line on what happened to an order.
fn describe_order(events: &[Event]) -> String {
    let mut parts = Vec::new();
    for e in events {
        match e {
            Event::OrderAccepted { order, .. } => {
                parts.push(format!("accepted as order #{}", order.order_id))
            }
            Event::OrderRejected { reason, .. } => parts.push(format!("rejected: {reason}")),
            Event::Trade {
                price,
                qty,
                buyer_commission,
                seller_commission,
                seller_taxes,
                taker_side,
                ..
            } => {
                let (fee, tax) = match taker_side {
                    Side::Buy => (buyer_commission.0, 0),
                    Side::Sell => (seller_commission.0, seller_taxes[0].0 + seller_taxes[1].0),
                };
                let tax = if tax > 0 {
                    format!(", tax {}", krw(tax))
                } else {
                    String::new()
                };
                parts.push(format!(
                    "filled {} @ {} (commission {}{tax})",
                    qty,
                    krw(price.0),
                    krw(fee)
                ));
            }
            Event::OrderCancelled {
                qty_cancelled,
                reason,
                ..
            } => parts.push(format!("{qty_cancelled} cancelled ({reason:?})")),
            _ => {}
        }
    }
    let rested = events.iter().rev().find_map(|e| match e {
        Event::Trade { taker_leaves, .. } => Some(*taker_leaves),
        _ => None,
    });
    if let Some(leaves) = rested
        && leaves.0 > 0
        && !events
            .iter()
            .any(|e| matches!(e, Event::OrderCancelled { .. }))
    {
        parts.push(format!(
            "{leaves} left resting in the book (partially filled)"
        ));
    }
    if parts.is_empty() {
        "no effect".into()
    } else {
        parts.join("; ")
    }
}

fn expect_status(events: &[Event], want: TxStatus) -> anyhow::Result<TxId> {
    events
        .iter()
        .find_map(|e| match e {
            Event::TransactionStatusChanged { tx, to, .. } if *to == want => Some(*tx),
            _ => None,
        })
        .with_context(|| format!("expected a transaction to become {want:?}: {events:?}"))
}

type Level = (Price, Qty);

/// Waits until the read model shows a two-sided quote for `code`.
fn wait_for_quote(node: &Node, code: &str) -> anyhow::Result<(SymbolId, String, Level, Level)> {
    for _ in 0..500 {
        {
            let rm = node.read_model.read();
            if let Some(s) = rm.symbol_by_code(code)
                && let (Some(bid), Some(ask)) = (s.book.best_bid(), s.book.best_ask())
            {
                return Ok((s.symbol.id, s.symbol.name.to_string(), bid, ask));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("no quote for {code} arrived from the simulated feed")
}

fn print_portfolio(
    rm: &ReadModel,
    account: AccountId,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let a = rm.accounts.get(&account).copied().unwrap_or_default();
    writeln!(out, "\nPortfolio of account #{account}")?;
    writeln!(
        out,
        "  cash {} KRW, held {} KRW, available {} KRW",
        krw(a.cash.0),
        krw(a.cash_hold.0),
        krw(a.available().0)
    )?;
    writeln!(
        out,
        "  {:<8} {:>6} {:>12} {:>12} {:>14} {:>12} {:>12}",
        "symbol", "qty", "avg cost", "last", "value", "unrealized", "realized"
    )?;
    for p in rm.positions_of(account) {
        let Some(s) = rm.symbols.get(&p.symbol) else {
            continue;
        };
        let last = s.symbol.last_trade_price.unwrap_or(s.symbol.base_price);
        let (value, unrealized) = p.valuation(last);
        writeln!(
            out,
            "  {:<8} {:>6} {:>12} {:>12} {:>14} {:>12} {:>12}",
            s.symbol.code.as_str(),
            p.qty().0,
            p.average_cost()
                .map_or("-".into(), |c| krw(c.round() as i64)),
            krw(last.0),
            krw(value.0),
            krw(unrealized.0),
            krw(p.realized_pnl.0)
        )?;
    }
    writeln!(
        out,
        "  (average cost includes buy commission; realized PnL is net of commission and tax)"
    )
}

fn print_trial_balance(rm: &ReadModel, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "\nTrial balance (every asset must sum to zero over all ledger accounts)"
    )?;
    let named = [
        ("SYSTEM_FEE", LedgerAccount::SystemFee),
        ("SYSTEM_TAX", LedgerAccount::SystemTax),
        ("SYSTEM_MARKET", LedgerAccount::SystemMarket),
        ("SYSTEM_EXTERNAL", LedgerAccount::SystemExternal),
    ];
    let user_cash: i64 = rm.accounts.values().map(|a| a.cash.0).sum();
    writeln!(
        out,
        "  KRW  {:<16} {:>16}",
        "USER_CASH (all)",
        krw(user_cash)
    )?;
    for (label, acct) in named {
        writeln!(
            out,
            "  KRW  {:<16} {:>16}",
            label,
            krw(rm.balance(acct, Asset::Krw))
        )?;
    }
    let mut all_zero = true;
    for (asset, sum) in rm.trial_balance() {
        let label = match asset {
            Asset::Krw => "KRW".to_owned(),
            Asset::Shares(s) => rm
                .symbols
                .get(&s)
                .map_or(format!("#{s}"), |v| format!("{} shares", v.symbol.code)),
        };
        if sum != 0 {
            all_zero = false;
        }
        if asset == Asset::Krw || sum != 0 {
            writeln!(out, "  sum of {label}: {sum}")?;
        }
    }
    let shares = rm
        .trial_balance()
        .keys()
        .filter(|a| **a != Asset::Krw)
        .count();
    writeln!(
        out,
        "  {} assets ({} share classes traded): {}",
        shares + 1,
        shares,
        if all_zero {
            "every sum is 0: balanced"
        } else {
            "NOT BALANCED"
        }
    )
}
