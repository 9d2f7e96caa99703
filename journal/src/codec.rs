//! The payload codec: how a [`Command`] is laid out in a journal frame's payload, and how an
//! [`EngineSnapshot`] is laid out in a snapshot file's payload. The only module that knows
//! either format (ADR-005).
//!
//! **Commands** use a hand-written, fixed-width little-endian layout: one tag byte naming the
//! command, then its fields in the order listed below, with no padding and no varints.
//!
//! ```text
//! tag  command              fields after the tag (bytes)
//!   1  RegisterSymbol       code str12, name str48, market u8, tick rule (u8 0 KRX | 1 fixed + i64),
//!                           base_price i64, banded u8 (0|1), lot_size i64
//!   2  SetFeeSchedule       commission_ppm i64, kospi (stt i64, rural i64), kosdaq (..), other (..)
//!   3  StartOfDay           trading_day u32, count u32, count x (symbol u32, base_price i64)
//!   4  SetMarketPhase       phase u8
//!   5  EndOfDay             trading_day u32
//!   6  OpenAccount          owner str32
//!   7  Deposit              account u32, amount i64, external_ref str32
//!   8  Withdraw             account u32, amount i64, external_ref str32
//!   9  Adjust               account u32, asset (u8 0 KRW | 1 shares + symbol u32), amount i64, external_ref str32
//!                           (cost_price 0)
//!  10  ConfirmTransaction   tx u64
//!  11  FailTransaction      tx u64
//!  12  ReverseTransaction   tx u64
//!  13  ExpireStaleExternal  cutoff_ts u64
//!  14  PlaceOrder           account u32, client_order_id u64, symbol u32, side u8, order_type u8,
//!                           tif u8, price i64, qty i64                                   (36 bytes)
//!  15  CancelOrder          account u32, request_id u64, order_id u64                    (21 bytes)
//!  16  CancelAll            account u32, request_id u64, symbol (u8 0 none | 1 + u32)
//!  17  ModifyOrder          account u32, request_id u64, order_id u64, new_qty i64, new_price i64
//!  18  QuoteUpdate          symbol u32, bid_price i64, bid_qty i64, ask_price i64, ask_qty i64
//!  19  TakeSnapshot         (nothing)
//!  20  Adjust at a cost     the fields of tag 9, then cost_price i64 (never 0: a cost price of
//!                           0 is written as tag 9, so every command has one encoding)
//!  21  SetQuoteStatus       symbol u32, status u8 (0 fresh, 1 stale)
//!  30  BeginEpoch           epoch u64
//! strN = len u8 (<= N) + len bytes of UTF-8; enums are u8 in declaration order
//! (side: 0 buy, 1 sell; order_type: 0 limit, 1 market; tif: 0 day, 1 ioc, 2 fok;
//! market: 0 KOSPI, 1 KOSDAQ, 2 other; phase: 0 closed, 1 pre-open, 2 continuous,
//! 3 closing call, 4 after-hours).
//! ```
//!
//! Every command is journaled exactly as submitted, invalid ones included (the engine rejects
//! them on replay exactly as it did live), so the layout represents every value a `Command` can
//! hold: `CancelAll { symbol: Some(SymbolId(0)) }` and `None` differ on disk.
//!
//! **Snapshots** are postcard 1.x (serde) of [`EngineSnapshot`] behind a one-byte codec
//! version: they are written off the processor thread, hold nested collections that a
//! hand-written layout would have to track field by field, and are tied to the
//! engine-logic version anyway (a snapshot of another version is refused, see `state.rs`).
//!
//! **Invariants**
//! - `decode_command(encode(c)) == c` for every command; `encoded_len(c)` is exactly the number
//!   of bytes `encode_command` writes.
//! - A tag's layout never changes once journals exist. A new command or a changed field gets a
//!   new tag; the golden-byte tests (`tests/codec_golden.rs`) pin every tag's bytes.
//! - Decoding never panics and never allocates more than the payload can describe: every read
//!   is bounds-checked, every enum byte and bool is validated, trailing bytes are an error, and
//!   the `StartOfDay` count is checked against the bytes left before anything is allocated.
//!
//! **Performance**: encoding is one length computation plus a few unaligned stores straight into
//! the frame (no allocation, no intermediate buffer: [`append_command`] uses
//! `Journal::append_with`); decoding a steady-state command (order, cancel, modify, quote)
//! allocates nothing. Measured in ADR-005 against postcard and bincode 2.0.1.
//!
//! **Known limitations**: the layout is little-endian fixed width, so an order costs 36 bytes
//! where a varint format would take about 20; that buys speed and a format readable from the
//! table above. The snapshot format follows the serde field order of `EngineSnapshot`, so it
//! changes with the engine's structs; snapshots are a cache of the journal, never the only copy.

use kuku_engine::fees::TaxRates;
use kuku_engine::types::InlineStr;
use kuku_engine::{
    AccountId, Amount, Asset, ClientOrderId, Command, EngineSnapshot, Envelope, FeeSchedule,
    Market, MarketPhase, NewOrder, OrderId, OrderType, Price, Qty, QuoteStatus, RegisterSymbol,
    Side, SymbolId, TickRule, TimeInForce, TxId,
};

use crate::error::JournalError;
use crate::frame::Frame;
use crate::journal::Journal;

/// Tag bytes, one per command (see the module docs). 0 is never a tag, so a zeroed payload fails.
pub mod tag {
    pub const REGISTER_SYMBOL: u8 = 1;
    pub const SET_FEE_SCHEDULE: u8 = 2;
    pub const START_OF_DAY: u8 = 3;
    pub const SET_MARKET_PHASE: u8 = 4;
    pub const END_OF_DAY: u8 = 5;
    pub const OPEN_ACCOUNT: u8 = 6;
    pub const DEPOSIT: u8 = 7;
    pub const WITHDRAW: u8 = 8;
    pub const ADJUST: u8 = 9;
    pub const CONFIRM_TRANSACTION: u8 = 10;
    pub const FAIL_TRANSACTION: u8 = 11;
    pub const REVERSE_TRANSACTION: u8 = 12;
    pub const EXPIRE_STALE_EXTERNAL: u8 = 13;
    pub const PLACE_ORDER: u8 = 14;
    pub const CANCEL_ORDER: u8 = 15;
    pub const CANCEL_ALL: u8 = 16;
    pub const MODIFY_ORDER: u8 = 17;
    pub const QUOTE_UPDATE: u8 = 18;
    pub const TAKE_SNAPSHOT: u8 = 19;
    /// An `Adjust` whose `cost_price` is not 0 (a share transfer in at a cost).
    pub const ADJUST_AT_COST: u8 = 20;
    pub const SET_QUOTE_STATUS: u8 = 21;
    pub const BEGIN_EPOCH: u8 = 30;
}

/// Encoded size of a `PlaceOrder`, the dominant command.
pub const PLACE_ORDER_ENCODED_BYTES: usize = 36;

/// The version byte in front of every snapshot payload.
/// 2: an external transaction carries the cost price of shares transferred in.
/// 3: a symbol carries its quote status (`SetQuoteStatus`, ADR-023).
pub const SNAPSHOT_CODEC_VERSION: u8 = 3;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload ends before the field being read.
    #[error(
        "payload truncated: {field} needs {needed} more bytes at offset {offset}, {available} left"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// The first byte is not a known command tag.
    #[error("unknown command tag {tag}")]
    UnknownTag { tag: u8 },
    /// An enum byte, bool or option flag outside its range.
    #[error("invalid {field} value {value} at offset {offset}")]
    InvalidValue {
        field: &'static str,
        offset: usize,
        value: u64,
    },
    /// A string longer than its field allows, or not UTF-8.
    #[error("invalid {field} string at offset {offset}: {reason}")]
    InvalidString {
        field: &'static str,
        offset: usize,
        reason: &'static str,
    },
    /// Bytes left over after a whole command.
    #[error("{extra} unexpected bytes after the command (payload of {len} bytes)")]
    TrailingBytes { len: usize, extra: usize },
    /// `encode_command` was given a buffer smaller than `encoded_len`.
    #[error("encode buffer of {available} bytes is too small for {needed}")]
    BufferTooSmall { needed: usize, available: usize },
    /// A snapshot payload with a codec version this build does not read.
    #[error(
        "snapshot payload codec version {version} is not supported (this build reads {SNAPSHOT_CODEC_VERSION})"
    )]
    SnapshotVersion { version: u8 },
    /// The snapshot payload is not a valid postcard encoding of an `EngineSnapshot`.
    #[error("snapshot payload does not decode: {reason}")]
    Snapshot { reason: String },
}

// ---------------------------------------------------------------------------------------------
// Commands: encoding

/// Exactly how many bytes `encode_command` writes for `command`.
#[inline]
pub fn encoded_len(command: &Command) -> usize {
    1 + match command {
        Command::PlaceOrder(_) => PLACE_ORDER_ENCODED_BYTES - 1,
        Command::CancelOrder { .. } => 4 + 8 + 8,
        Command::CancelAll { symbol, .. } => 4 + 8 + 1 + if symbol.is_some() { 4 } else { 0 },
        Command::ModifyOrder { .. } => 4 + 8 + 8 + 8 + 8,
        Command::QuoteUpdate { .. } => 4 + 8 * 4,
        Command::RegisterSymbol(r) => {
            let tick = match r.tick_rule {
                TickRule::Krx => 1,
                TickRule::Fixed(_) => 1 + 8,
            };
            str_len(&r.code) + str_len(&r.name) + 1 + tick + 8 + 1 + 8
        }
        Command::SetFeeSchedule(_) => 8 * 7,
        Command::StartOfDay { base_prices, .. } => 4 + 4 + base_prices.len() * (4 + 8),
        Command::SetMarketPhase { .. } => 1,
        Command::EndOfDay { .. } => 4,
        Command::OpenAccount { owner } => str_len(owner),
        Command::Deposit { external_ref, .. } | Command::Withdraw { external_ref, .. } => {
            4 + 8 + str_len(external_ref)
        }
        Command::Adjust {
            asset,
            external_ref,
            cost_price,
            ..
        } => {
            let asset = match asset {
                Asset::Krw => 1,
                Asset::Shares(_) => 1 + 4,
            };
            let cost = if cost_price.0 == 0 { 0 } else { 8 };
            4 + asset + 8 + str_len(external_ref) + cost
        }
        Command::ConfirmTransaction { .. }
        | Command::FailTransaction { .. }
        | Command::ReverseTransaction { .. }
        | Command::ExpireStaleExternal { .. }
        | Command::BeginEpoch { .. } => 8,
        Command::TakeSnapshot => 0,
        Command::SetQuoteStatus { .. } => 4 + 1,
    }
}

#[inline]
fn str_len<const N: usize>(s: &InlineStr<N>) -> usize {
    1 + s.as_str().len()
}

/// Encodes `command` at the start of `buf`; returns the bytes written (`encoded_len`).
#[inline]
pub fn encode_command(command: &Command, buf: &mut [u8]) -> Result<usize, CodecError> {
    let needed = encoded_len(command);
    if buf.len() < needed {
        return Err(CodecError::BufferTooSmall {
            needed,
            available: buf.len(),
        });
    }
    let written = encode_exact(command, &mut buf[..needed]);
    debug_assert_eq!(
        written, needed,
        "encoded_len disagrees with encode for {command:?}"
    );
    Ok(needed)
}

/// Encodes into `buf`, which is exactly `encoded_len(command)` bytes; returns the bytes written.
#[inline]
fn encode_exact(command: &Command, buf: &mut [u8]) -> usize {
    let mut w = Writer { buf, at: 0 };
    match command {
        Command::PlaceOrder(o) => encode_place_order(&mut w, o),
        Command::CancelOrder {
            account,
            request_id,
            order_id,
        } => {
            w.u8(tag::CANCEL_ORDER);
            w.u32(account.0);
            w.u64(request_id.0);
            w.u64(order_id.0);
        }
        Command::CancelAll {
            account,
            request_id,
            symbol,
        } => {
            w.u8(tag::CANCEL_ALL);
            w.u32(account.0);
            w.u64(request_id.0);
            match symbol {
                None => w.u8(0),
                Some(s) => {
                    w.u8(1);
                    w.u32(s.0);
                }
            }
        }
        Command::ModifyOrder {
            account,
            request_id,
            order_id,
            new_qty,
            new_price,
        } => {
            w.u8(tag::MODIFY_ORDER);
            w.u32(account.0);
            w.u64(request_id.0);
            w.u64(order_id.0);
            w.i64(new_qty.0);
            w.i64(new_price.0);
        }
        Command::QuoteUpdate {
            symbol,
            bid_price,
            bid_qty,
            ask_price,
            ask_qty,
        } => {
            w.u8(tag::QUOTE_UPDATE);
            w.u32(symbol.0);
            w.i64(bid_price.0);
            w.i64(bid_qty.0);
            w.i64(ask_price.0);
            w.i64(ask_qty.0);
        }
        Command::RegisterSymbol(r) => encode_register_symbol(&mut w, r),
        Command::SetFeeSchedule(f) => encode_fee_schedule(&mut w, f),
        Command::StartOfDay {
            trading_day,
            base_prices,
        } => encode_start_of_day(&mut w, *trading_day, base_prices),
        Command::SetMarketPhase { phase } => {
            w.u8(tag::SET_MARKET_PHASE);
            w.u8(phase_byte(*phase));
        }
        Command::EndOfDay { trading_day } => {
            w.u8(tag::END_OF_DAY);
            w.u32(*trading_day);
        }
        Command::OpenAccount { owner } => {
            w.u8(tag::OPEN_ACCOUNT);
            w.str(owner);
        }
        Command::Deposit {
            account,
            amount,
            external_ref,
        } => encode_transfer(&mut w, tag::DEPOSIT, *account, *amount, external_ref),
        Command::Withdraw {
            account,
            amount,
            external_ref,
        } => encode_transfer(&mut w, tag::WITHDRAW, *account, *amount, external_ref),
        Command::Adjust {
            account,
            asset,
            amount,
            external_ref,
            cost_price,
        } => {
            let at_cost = cost_price.0 != 0;
            w.u8(if at_cost {
                tag::ADJUST_AT_COST
            } else {
                tag::ADJUST
            });
            w.u32(account.0);
            match asset {
                Asset::Krw => w.u8(0),
                Asset::Shares(s) => {
                    w.u8(1);
                    w.u32(s.0);
                }
            }
            w.i64(amount.0);
            w.str(external_ref);
            if at_cost {
                w.i64(cost_price.0);
            }
        }
        Command::ConfirmTransaction { tx } => w.tag_u64(tag::CONFIRM_TRANSACTION, tx.0),
        Command::FailTransaction { tx } => w.tag_u64(tag::FAIL_TRANSACTION, tx.0),
        Command::ReverseTransaction { tx } => w.tag_u64(tag::REVERSE_TRANSACTION, tx.0),
        Command::ExpireStaleExternal { cutoff_ts } => {
            w.tag_u64(tag::EXPIRE_STALE_EXTERNAL, *cutoff_ts)
        }
        Command::TakeSnapshot => w.u8(tag::TAKE_SNAPSHOT),
        Command::SetQuoteStatus { symbol, status } => {
            w.u8(tag::SET_QUOTE_STATUS);
            w.u32(symbol.0);
            w.u8(match status {
                QuoteStatus::Fresh => 0,
                QuoteStatus::Stale => 1,
            });
        }
        Command::BeginEpoch { epoch } => w.tag_u64(tag::BEGIN_EPOCH, *epoch),
    }
    w.at
}

#[inline]
fn encode_place_order(w: &mut Writer<'_>, o: &NewOrder) {
    w.u8(tag::PLACE_ORDER);
    w.u32(o.account.0);
    w.u64(o.client_order_id.0);
    w.u32(o.symbol.0);
    w.u8(side_byte(o.side));
    w.u8(match o.order_type {
        OrderType::Limit => 0,
        OrderType::Market => 1,
    });
    w.u8(match o.tif {
        TimeInForce::Day => 0,
        TimeInForce::Ioc => 1,
        TimeInForce::Fok => 2,
    });
    w.i64(o.price.0);
    w.i64(o.qty.0);
}

fn encode_fee_schedule(w: &mut Writer<'_>, f: &FeeSchedule) {
    w.u8(tag::SET_FEE_SCHEDULE);
    w.i64(f.commission_ppm);
    for rates in [&f.kospi, &f.kosdaq, &f.other] {
        w.i64(rates.securities_transaction_ppm);
        w.i64(rates.rural_special_ppm);
    }
}

fn encode_start_of_day(w: &mut Writer<'_>, trading_day: u32, base_prices: &[(SymbolId, Price)]) {
    w.u8(tag::START_OF_DAY);
    w.u32(trading_day);
    // Bounded by frame_payload_max long before u32::MAX entries.
    w.u32(base_prices.len() as u32);
    for (symbol, price) in base_prices {
        w.u32(symbol.0);
        w.i64(price.0);
    }
}

fn encode_transfer<const N: usize>(
    w: &mut Writer<'_>,
    tag: u8,
    account: AccountId,
    amount: Amount,
    external_ref: &InlineStr<N>,
) {
    w.u8(tag);
    w.u32(account.0);
    w.i64(amount.0);
    w.str(external_ref);
}

fn encode_register_symbol(w: &mut Writer<'_>, r: &RegisterSymbol) {
    w.u8(tag::REGISTER_SYMBOL);
    w.str(&r.code);
    w.str(&r.name);
    w.u8(match r.market {
        Market::Kospi => 0,
        Market::Kosdaq => 1,
        Market::Other => 2,
    });
    match r.tick_rule {
        TickRule::Krx => w.u8(0),
        TickRule::Fixed(tick) => {
            w.u8(1);
            w.i64(tick);
        }
    }
    w.i64(r.base_price.0);
    w.u8(r.banded as u8);
    w.i64(r.lot_size.0);
}

#[inline]
fn side_byte(side: Side) -> u8 {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn phase_byte(phase: MarketPhase) -> u8 {
    match phase {
        MarketPhase::Closed => 0,
        MarketPhase::PreOpen => 1,
        MarketPhase::Continuous => 2,
        MarketPhase::ClosingCall => 3,
        MarketPhase::AfterHours => 4,
    }
}

/// Sequential stores into a buffer sized by `encoded_len` (so no store can run past it).
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&mut self, bytes: [u8; N]) {
        self.buf[self.at..self.at + N].copy_from_slice(&bytes);
        self.at += N;
    }

    #[inline(always)]
    fn u8(&mut self, v: u8) {
        self.bytes([v]);
    }

    #[inline(always)]
    fn u32(&mut self, v: u32) {
        self.bytes(v.to_le_bytes());
    }

    #[inline(always)]
    fn u64(&mut self, v: u64) {
        self.bytes(v.to_le_bytes());
    }

    #[inline(always)]
    fn i64(&mut self, v: i64) {
        self.bytes(v.to_le_bytes());
    }

    fn tag_u64(&mut self, tag: u8, v: u64) {
        self.u8(tag);
        self.u64(v);
    }

    fn str<const N: usize>(&mut self, s: &InlineStr<N>) {
        let bytes = s.as_str().as_bytes();
        // InlineStr holds at most min(N, 255) bytes.
        self.u8(bytes.len() as u8);
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// `command` encoded into a new vector (tools and tests; the journal path is [`append_command`]).
pub fn encode_command_to_vec(command: &Command) -> Vec<u8> {
    let mut buf = vec![0u8; encoded_len(command)];
    let written = encode_command(command, &mut buf).expect("the buffer is sized by encoded_len");
    debug_assert_eq!(written, buf.len());
    buf
}

/// Appends `envelope` as one frame, encoding the command straight into the segment mapping
/// (no intermediate buffer). Returns the payload length. Nothing is durable before
/// `Journal::commit`.
#[inline]
pub fn append_command(journal: &mut Journal, envelope: &Envelope) -> Result<usize, JournalError> {
    let len = encoded_len(&envelope.command);
    // `buf` is exactly `len` bytes (append_with's contract), so the exact encoder applies.
    journal.append_with(envelope.seq, envelope.ts, len, |buf| {
        encode_exact(&envelope.command, buf)
    })
}

// ---------------------------------------------------------------------------------------------
// Commands: decoding

/// Decodes one command payload. Never panics; see [`CodecError`] for what is refused.
#[inline]
pub fn decode_command(payload: &[u8]) -> Result<Command, CodecError> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    let tag = r.u8("tag")?;
    let command = match tag {
        tag::PLACE_ORDER => Command::PlaceOrder(NewOrder {
            account: AccountId(r.u32("account")?),
            client_order_id: ClientOrderId(r.u64("client_order_id")?),
            symbol: SymbolId(r.u32("symbol")?),
            side: r.side()?,
            order_type: match r.u8("order_type")? {
                0 => OrderType::Limit,
                1 => OrderType::Market,
                v => return Err(r.invalid("order_type", v)),
            },
            tif: match r.u8("tif")? {
                0 => TimeInForce::Day,
                1 => TimeInForce::Ioc,
                2 => TimeInForce::Fok,
                v => return Err(r.invalid("tif", v)),
            },
            price: Price(r.i64("price")?),
            qty: Qty(r.i64("qty")?),
        }),
        tag::CANCEL_ORDER => Command::CancelOrder {
            account: AccountId(r.u32("account")?),
            request_id: ClientOrderId(r.u64("request_id")?),
            order_id: OrderId(r.u64("order_id")?),
        },
        tag::CANCEL_ALL => Command::CancelAll {
            account: AccountId(r.u32("account")?),
            request_id: ClientOrderId(r.u64("request_id")?),
            symbol: match r.u8("symbol flag")? {
                0 => None,
                1 => Some(SymbolId(r.u32("symbol")?)),
                v => return Err(r.invalid("symbol flag", v)),
            },
        },
        tag::MODIFY_ORDER => Command::ModifyOrder {
            account: AccountId(r.u32("account")?),
            request_id: ClientOrderId(r.u64("request_id")?),
            order_id: OrderId(r.u64("order_id")?),
            new_qty: Qty(r.i64("new_qty")?),
            new_price: Price(r.i64("new_price")?),
        },
        tag::QUOTE_UPDATE => Command::QuoteUpdate {
            symbol: SymbolId(r.u32("symbol")?),
            bid_price: Price(r.i64("bid_price")?),
            bid_qty: Qty(r.i64("bid_qty")?),
            ask_price: Price(r.i64("ask_price")?),
            ask_qty: Qty(r.i64("ask_qty")?),
        },
        other => decode_admin(&mut r, other)?,
    };
    if r.at != payload.len() {
        return Err(CodecError::TrailingBytes {
            len: payload.len(),
            extra: payload.len() - r.at,
        });
    }
    Ok(command)
}

fn decode_admin(r: &mut Reader<'_>, tag: u8) -> Result<Command, CodecError> {
    Ok(match tag {
        tag::REGISTER_SYMBOL => Command::RegisterSymbol(decode_register_symbol(r)?),
        tag::SET_FEE_SCHEDULE => {
            let commission_ppm = r.i64("commission_ppm")?;
            let mut rates = [TaxRates::default(); 3];
            for rate in &mut rates {
                rate.securities_transaction_ppm = r.i64("securities_transaction_ppm")?;
                rate.rural_special_ppm = r.i64("rural_special_ppm")?;
            }
            let [kospi, kosdaq, other] = rates;
            Command::SetFeeSchedule(FeeSchedule {
                commission_ppm,
                kospi,
                kosdaq,
                other,
            })
        }
        tag::START_OF_DAY => {
            let trading_day = r.u32("trading_day")?;
            let count = r.u32("base price count")? as usize;
            // Checked before allocating: a corrupt count cannot size a huge vector.
            let needed = count.saturating_mul(4 + 8);
            r.ensure("base prices", needed)?;
            let mut base_prices = Vec::with_capacity(count);
            for _ in 0..count {
                base_prices.push((SymbolId(r.u32("symbol")?), Price(r.i64("base_price")?)));
            }
            Command::StartOfDay {
                trading_day,
                base_prices,
            }
        }
        tag::SET_MARKET_PHASE => Command::SetMarketPhase {
            phase: match r.u8("phase")? {
                0 => MarketPhase::Closed,
                1 => MarketPhase::PreOpen,
                2 => MarketPhase::Continuous,
                3 => MarketPhase::ClosingCall,
                4 => MarketPhase::AfterHours,
                v => return Err(r.invalid("phase", v)),
            },
        },
        tag::END_OF_DAY => Command::EndOfDay {
            trading_day: r.u32("trading_day")?,
        },
        tag::OPEN_ACCOUNT => Command::OpenAccount {
            owner: r.str("owner")?,
        },
        tag::DEPOSIT => Command::Deposit {
            account: AccountId(r.u32("account")?),
            amount: Amount(r.i64("amount")?),
            external_ref: r.str("external_ref")?,
        },
        tag::WITHDRAW => Command::Withdraw {
            account: AccountId(r.u32("account")?),
            amount: Amount(r.i64("amount")?),
            external_ref: r.str("external_ref")?,
        },
        tag::ADJUST | tag::ADJUST_AT_COST => {
            let account = AccountId(r.u32("account")?);
            let asset = match r.u8("asset")? {
                0 => Asset::Krw,
                1 => Asset::Shares(SymbolId(r.u32("asset symbol")?)),
                v => return Err(r.invalid("asset", v)),
            };
            let amount = Amount(r.i64("amount")?);
            let external_ref = r.str("external_ref")?;
            let cost_price = if tag == tag::ADJUST_AT_COST {
                match r.i64("cost_price")? {
                    // Written as tag 9: a second encoding of the same command.
                    0 => {
                        return Err(CodecError::InvalidValue {
                            field: "cost_price",
                            offset: r.at - 8,
                            value: 0,
                        });
                    }
                    p => Price(p),
                }
            } else {
                Price(0)
            };
            Command::Adjust {
                account,
                asset,
                amount,
                external_ref,
                cost_price,
            }
        }
        tag::CONFIRM_TRANSACTION => Command::ConfirmTransaction {
            tx: TxId(r.u64("tx")?),
        },
        tag::FAIL_TRANSACTION => Command::FailTransaction {
            tx: TxId(r.u64("tx")?),
        },
        tag::REVERSE_TRANSACTION => Command::ReverseTransaction {
            tx: TxId(r.u64("tx")?),
        },
        tag::EXPIRE_STALE_EXTERNAL => Command::ExpireStaleExternal {
            cutoff_ts: r.u64("cutoff_ts")?,
        },
        tag::TAKE_SNAPSHOT => Command::TakeSnapshot,
        tag::SET_QUOTE_STATUS => Command::SetQuoteStatus {
            symbol: SymbolId(r.u32("symbol")?),
            status: match r.u8("status")? {
                0 => QuoteStatus::Fresh,
                1 => QuoteStatus::Stale,
                v => return Err(r.invalid("status", v)),
            },
        },
        tag::BEGIN_EPOCH => Command::BeginEpoch {
            epoch: r.u64("epoch")?,
        },
        tag => return Err(CodecError::UnknownTag { tag }),
    })
}

fn decode_register_symbol(r: &mut Reader<'_>) -> Result<RegisterSymbol, CodecError> {
    Ok(RegisterSymbol {
        code: r.str("code")?,
        name: r.str("name")?,
        market: match r.u8("market")? {
            0 => Market::Kospi,
            1 => Market::Kosdaq,
            2 => Market::Other,
            v => return Err(r.invalid("market", v)),
        },
        tick_rule: match r.u8("tick rule")? {
            0 => TickRule::Krx,
            1 => TickRule::Fixed(r.i64("fixed tick")?),
            v => return Err(r.invalid("tick rule", v)),
        },
        base_price: Price(r.i64("base_price")?),
        banded: match r.u8("banded")? {
            0 => false,
            1 => true,
            v => return Err(r.invalid("banded", v)),
        },
        lot_size: Qty(r.i64("lot_size")?),
    })
}

/// Decodes a verified journal frame into an envelope.
#[inline]
pub fn decode_envelope(frame: &Frame<'_>) -> Result<Envelope, CodecError> {
    Ok(Envelope {
        seq: frame.seq,
        ts: frame.ts,
        command: decode_command(frame.payload)?,
    })
}

/// Bounds-checked sequential reads; every failure names the field and offset.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    #[inline(always)]
    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        match self
            .bytes
            .get(self.at..self.at + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
        {
            Some(word) => {
                self.at += N;
                Ok(word)
            }
            None => Err(self.truncated(field, N)),
        }
    }

    #[cold]
    fn truncated(&self, field: &'static str, needed: usize) -> CodecError {
        CodecError::Truncated {
            field,
            offset: self.at,
            needed,
            available: self.bytes.len().saturating_sub(self.at),
        }
    }

    #[cold]
    fn invalid(&self, field: &'static str, value: u8) -> CodecError {
        CodecError::InvalidValue {
            field,
            offset: self.at - 1,
            value: value.into(),
        }
    }

    fn ensure(&self, field: &'static str, needed: usize) -> Result<(), CodecError> {
        if self.bytes.len() - self.at < needed {
            return Err(self.truncated(field, needed));
        }
        Ok(())
    }

    #[inline(always)]
    fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.take::<1>(field)?[0])
    }

    #[inline(always)]
    fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take(field)?))
    }

    #[inline(always)]
    fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take(field)?))
    }

    #[inline(always)]
    fn i64(&mut self, field: &'static str) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.take(field)?))
    }

    #[inline]
    fn side(&mut self) -> Result<Side, CodecError> {
        match self.u8("side")? {
            0 => Ok(Side::Buy),
            1 => Ok(Side::Sell),
            v => Err(self.invalid("side", v)),
        }
    }

    fn str<const N: usize>(&mut self, field: &'static str) -> Result<InlineStr<N>, CodecError> {
        let offset = self.at;
        let len = self.u8(field)? as usize;
        if len > N {
            return Err(CodecError::InvalidString {
                field,
                offset,
                reason: "longer than the field allows",
            });
        }
        self.ensure(field, len)?;
        let bytes = &self.bytes[self.at..self.at + len];
        let s = std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidString {
            field,
            offset,
            reason: "not UTF-8",
        })?;
        self.at += len;
        InlineStr::new(s).ok_or(CodecError::InvalidString {
            field,
            offset,
            reason: "longer than the field allows",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

/// Encodes a snapshot payload: the codec version byte, then postcard.
pub fn encode_snapshot(snapshot: &EngineSnapshot) -> Result<Vec<u8>, CodecError> {
    let out = vec![SNAPSHOT_CODEC_VERSION];
    postcard::to_extend(snapshot, out).map_err(|e| CodecError::Snapshot {
        reason: e.to_string(),
    })
}

/// Decodes a snapshot payload written by [`encode_snapshot`]. Never panics on corrupt input.
pub fn decode_snapshot(payload: &[u8]) -> Result<EngineSnapshot, CodecError> {
    let Some((&version, body)) = payload.split_first() else {
        return Err(CodecError::Truncated {
            field: "snapshot codec version",
            offset: 0,
            needed: 1,
            available: 0,
        });
    };
    if version != SNAPSHOT_CODEC_VERSION {
        return Err(CodecError::SnapshotVersion { version });
    }
    let (snapshot, rest) =
        postcard::take_from_bytes::<EngineSnapshot>(body).map_err(|e| CodecError::Snapshot {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            len: payload.len(),
            extra: rest.len(),
        });
    }
    Ok(snapshot)
}
