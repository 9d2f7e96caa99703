//! Every message of the protocol, its type byte and its fixed layout.
//!
//! One macro declares each message once; from that declaration come the struct, its body
//! size, its encoder and decoder, and the layout table that docs/protocol.md prints (a test
//! checks the document against [`layout_markdown`], so the two cannot drift apart).
//!
//! **Invariants**: each type has exactly one body size (`BODY_LEN`); a frame whose length
//! does not match its type is refused before any field is read.
//!
//! **Performance**: encode and decode are straight-line field copies; no allocation except
//! growing the caller's output buffer.

use super::field::{CancelCause, Code, Field, FieldError, Liquidity, WireOrderState, WireTickRule};
use kuku_engine::{
    AccountId, Amount, ClientOrderId, CommandKind, ExternalRef, Market, MarketPhase, OrderId,
    OrderType, Price, Qty, RequestKind, Side, SymbolName, TimeInForce, TradeId, TxId, TxStatus,
    TxType,
};

/// Who may send a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server, on a trading session (or a query on either kind).
    ClientToServer,
    /// Client to server, on an admin session only.
    AdminToServer,
    /// Server to client.
    ServerToClient,
    /// Either way (Heartbeat, Logout).
    Both,
}

/// One field of a layout, for the protocol document.
#[derive(Clone, Copy, Debug)]
pub struct FieldDoc {
    pub name: &'static str,
    pub wire_type: &'static str,
    pub size: usize,
    pub doc: &'static str,
}

/// One message type, for the protocol document.
#[derive(Clone, Copy, Debug)]
pub struct MessageDoc {
    pub name: &'static str,
    pub msg_type: u8,
    pub direction: Direction,
    pub body_len: usize,
    pub doc: &'static str,
    pub fields: &'static [FieldDoc],
}

/// Why a frame could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("message type {msg_type:#04x} has a {expected}-byte body, not {len}")]
    BadLength {
        msg_type: u8,
        len: usize,
        expected: usize,
    },
    #[error("message type {msg_type:#04x}, field {field}: {source}")]
    InvalidField {
        msg_type: u8,
        field: &'static str,
        source: FieldError,
    },
}

macro_rules! messages {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident = $code:literal, $dir:ident {
            $( $(#[doc = $fdoc:literal])* $field:ident : $ftype:ty ),* $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub struct $name {
                $( $(#[doc = $fdoc])* pub $field: $ftype, )*
            }

            impl $name {
                pub const TYPE: u8 = $code;
                pub const BODY_LEN: usize = 0 $(+ <$ftype as Field>::SIZE)*;
                pub const FIELDS: &'static [FieldDoc] = &[$(FieldDoc {
                    name: stringify!($field),
                    wire_type: <$ftype as Field>::WIRE_TYPE,
                    size: <$ftype as Field>::SIZE,
                    doc: concat!("" $(, $fdoc)*),
                },)*];

                #[allow(unused_assignments, unused_variables, unused_mut)]
                fn put_body(&self, body: &mut [u8]) {
                    let mut at = 0;
                    $(
                        let n = <$ftype as Field>::SIZE;
                        self.$field.put(&mut body[at..at + n]);
                        at += n;
                    )*
                }

                #[allow(unused_assignments, unused_variables, unused_mut)]
                fn get_body(body: &[u8]) -> Result<$name, DecodeError> {
                    let mut at = 0;
                    Ok($name {
                        $($field: {
                            let n = <$ftype as Field>::SIZE;
                            let v = <$ftype as Field>::get(&body[at..at + n]).map_err(|source| {
                                DecodeError::InvalidField {
                                    msg_type: $code,
                                    field: stringify!($field),
                                    source,
                                }
                            })?;
                            at += n;
                            v
                        },)*
                    })
                }
            }

            impl From<$name> for Message {
                fn from(m: $name) -> Message {
                    Message::$name(m)
                }
            }
        )*

        /// Any protocol message.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Message {
            $($name($name),)*
        }

        impl Message {
            /// The type byte.
            pub fn msg_type(&self) -> u8 {
                match self { $(Message::$name(_) => $code,)* }
            }

            pub fn name(&self) -> &'static str {
                match self { $(Message::$name(_) => stringify!($name),)* }
            }

            pub fn direction(&self) -> Direction {
                match self { $(Message::$name(_) => Direction::$dir,)* }
            }

            /// The body length of this message's type.
            pub fn body_len(&self) -> usize {
                match self { $(Message::$name(_) => $name::BODY_LEN,)* }
            }

            fn put_body(&self, body: &mut [u8]) {
                match self { $(Message::$name(m) => m.put_body(body),)* }
            }

            /// Decodes a body of type `msg_type` (the frame's length already split off).
            pub fn decode(msg_type: u8, body: &[u8]) -> Result<Message, DecodeError> {
                let expected = body_len(msg_type).ok_or(DecodeError::UnknownType(msg_type))?;
                if body.len() != expected {
                    return Err(DecodeError::BadLength { msg_type, len: body.len(), expected });
                }
                match msg_type {
                    $($code => $name::get_body(body).map(Message::$name),)*
                    other => Err(DecodeError::UnknownType(other)),
                }
            }
        }

        /// The body length of a message type, or `None` for an unknown type.
        #[inline]
        pub fn body_len(msg_type: u8) -> Option<usize> {
            match msg_type {
                $($code => Some($name::BODY_LEN),)*
                _ => None,
            }
        }

        /// Every message type, in type order, for the protocol document.
        pub const MESSAGES: &[MessageDoc] = &[$(MessageDoc {
            name: stringify!($name),
            msg_type: $code,
            direction: Direction::$dir,
            body_len: $name::BODY_LEN,
            doc: concat!("" $(, $doc)*),
            fields: $name::FIELDS,
        },)*];
    };
}

/// Bytes before a message body: `length u16` (of type + body) and `type u8`.
pub const HEADER_BYTES: usize = 3;

impl Message {
    /// Bytes of the whole frame.
    pub fn frame_len(&self) -> usize {
        HEADER_BYTES + self.body_len()
    }

    /// Appends this message as one frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body_len = self.body_len();
        let start = out.len();
        out.resize(start + HEADER_BYTES + body_len, 0);
        let frame = &mut out[start..];
        let len = (1 + body_len) as u16;
        frame[..2].copy_from_slice(&len.to_le_bytes());
        frame[2] = self.msg_type();
        self.put_body(&mut frame[HEADER_BYTES..]);
    }

    /// This message as one frame.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.frame_len());
        self.encode(&mut out);
        out
    }
}

messages! {
    // ---- Session (both kinds) ----
    /// Opens a session. `account` 0 with the admin token opens an admin session.
    Login = 0x01, ClientToServer {
        /// The protocol version the client speaks: 2 (this document). Any other is refused
        /// with LoginRejected 9015 UnsupportedVersion.
        version: u16,
        /// The trading account, or 0 for an admin session.
        account: AccountId,
        /// Bit 0: cancel-on-disconnect; bit 1: no replay (live messages only). Trading
        /// sessions only; other bits must be 0.
        flags: u8,
        /// The last per-account sequence number the client has processed (0: none); every
        /// sequenced message after it that the server still holds is replayed.
        last_seen_acct_seq: u64,
        /// HMAC-SHA256 account token (trading) or the admin token (admin).
        token: [u8; 32],
    }
    /// The session is open; replayed messages (if any) follow at once, then live ones.
    LoginAccepted = 0x02, ServerToClient {
        account: AccountId,
        /// This session's id (its origin on the node).
        session_id: u64,
        /// The account's last sequence number when the session opened.
        acct_seq_last: u64,
        /// The first sequence number replayed (0: nothing replayed). Greater than
        /// `last_seen_acct_seq + 1` when older messages are no longer held (a gap).
        replay_first_seq: u64,
        /// How many sequenced messages are replayed before live ones.
        replay_count: u32,
        /// The server sends a Heartbeat after this long without sending anything.
        heartbeat_interval_ms: u32,
        /// The server closes the session after this long without receiving anything.
        idle_timeout_ms: u32,
        /// The account's request budget (shared by all its sessions): refill, requests per
        /// second. 0 with `burst` 0: not limited (admin sessions).
        rate_per_s: u32,
        /// The budget's capacity: the largest burst.
        burst: u32,
    }
    /// Login refused; the server closes the connection after it.
    LoginRejected = 0x03, ServerToClient {
        /// A code from the login table (e.g. 9010 InvalidToken).
        code: u16,
    }
    /// Login refused: the client's last seen sequence number is one this node never issued
    /// (an asynchronous failover lost the old primary's last messages). The client treats
    /// every message it saw after `replay_from_seq` as void and logs in again with
    /// `last_seen_acct_seq = replay_from_seq`. The server closes the connection after it.
    LoginDiverged = 0x07, ServerToClient {
        /// 9016 HistoryDiverged.
        code: u16,
        /// The last sequence number of the client's epoch that this node issued.
        replay_from_seq: u64,
    }
    /// Keeps an idle session alive (either way).
    Heartbeat = 0x04, Both {}
    /// Ends a session (either way). The server closes the connection after it.
    Logout = 0x05, Both {
        /// 0: a normal logout; otherwise why the server ended the session.
        code: u16,
    }
    /// The client broke the protocol; the server closes the connection after it.
    ProtocolError = 0x06, ServerToClient {
        /// A protocol error code (9050-9069).
        code: u16,
        /// The offending message type, or 0.
        msg_type: u8,
    }

    // ---- Trading session: requests ----
    /// A new order for the session's account.
    NewOrder = 0x10, ClientToServer {
        /// Unique per account per trading day (shared with cancels and modifies). Values with
        /// the top bit set are reserved for the gateway.
        client_order_id: ClientOrderId,
        symbol: Code,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        /// Limit price; must be 0 for MARKET orders (else 9006 MarketOrderPrice).
        price: Price,
        qty: Qty,
    }
    /// Cancels one live order.
    Cancel = 0x11, ClientToServer {
        /// A key from the same per-day space as client order ids.
        request_id: ClientOrderId,
        order_id: OrderId,
    }
    /// Cancels every live order of the account (of one symbol, if given).
    CancelAll = 0x12, ClientToServer {
        request_id: ClientOrderId,
        /// All NUL: every symbol.
        symbol: Option<Code>,
    }
    /// Sets a live LIMIT order's open quantity and price (both absolute).
    Modify = 0x13, ClientToServer {
        request_id: ClientOrderId,
        order_id: OrderId,
        /// The new open (leaves) quantity; the order's size becomes filled + new_qty.
        new_qty: Qty,
        new_price: Price,
    }
    /// Asks for one order's state: one OrderReport (if found), then QueryDone.
    OrderStatus = 0x14, ClientToServer {
        /// Echoed in the replies.
        request_id: u64,
        order_id: OrderId,
    }
    /// Asks for the live orders: one OrderReport each, then QueryDone.
    OpenOrders = 0x15, ClientToServer {
        request_id: u64,
        /// All NUL: every symbol.
        symbol: Option<Code>,
    }
    /// Asks for balances, holds and positions: AccountSnapshot, one PositionReport per
    /// position, then QueryDone.
    AccountQuery = 0x16, ClientToServer {
        request_id: u64,
        /// 0: the session's account. A trading session may name only its own; an admin
        /// session any (0 names no account there: 3001 UnknownAccount).
        account: AccountId,
    }
    /// Asks for the reference data: one MarketReport (trading day, phase, fees), one
    /// SymbolReport per listed symbol, then QueryDone. Trading and admin sessions.
    ReferenceQuery = 0x17, ClientToServer {
        request_id: u64,
        /// All NUL: every symbol; else only this one (unknown: QueryDone 1001 alone).
        symbol: Option<Code>,
    }

    // ---- Trading session: sequenced replies and notices ----
    /// An order was accepted (or a resend of an accepted order was recognized).
    OrderAccepted = 0x20, ServerToClient {
        /// Per-account sequence number.
        acct_seq: u64,
        order_id: OrderId,
        client_order_id: ClientOrderId,
        /// All NUL if the engine's code does not fit the wire (over 6 characters).
        symbol: Option<Code>,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        /// 1: this answers a resend with the same key and content; nothing new was created.
        resent: bool,
        price: Price,
        qty: Qty,
    }
    /// An order was rejected. `acct_seq` 0: decided by the gateway (Busy, RateLimited,
    /// unknown symbol code), not journaled, not replayed, and the key was not used.
    OrderRejected = 0x21, ServerToClient {
        acct_seq: u64,
        client_order_id: ClientOrderId,
        /// The symbol code the request named (echoed, also when it is unknown).
        symbol: Option<Code>,
        /// A reject code (docs/protocol.md, "Reject codes").
        reason: u16,
        resent: bool,
    }
    /// A fill of one of the account's orders.
    Execution = 0x22, ServerToClient {
        acct_seq: u64,
        order_id: OrderId,
        client_order_id: ClientOrderId,
        trade_id: TradeId,
        /// All NUL if the engine's code does not fit the wire (over 6 characters).
        symbol: Option<Code>,
        side: Side,
        liquidity: Liquidity,
        price: Price,
        qty: Qty,
        /// The order's open quantity after this fill (0: filled).
        leaves: Qty,
        /// Commission charged to this account for this fill.
        commission: Amount,
        /// Sell taxes charged to this account for this fill (0 on a buy).
        tax: Amount,
        /// Nanoseconds since the Unix epoch (the command's journal timestamp).
        ts_ns: u64,
    }
    /// An order left the book without filling (cancel, IOC/FOK/MARKET remainder, self-trade
    /// prevention, EndOfDay expiry).
    Cancelled = 0x23, ServerToClient {
        acct_seq: u64,
        order_id: OrderId,
        client_order_id: ClientOrderId,
        /// The cancel or cancel-all request, if the owner asked (else 0).
        request_id: ClientOrderId,
        /// All NUL if the engine's code does not fit the wire (over 6 characters).
        symbol: Option<Code>,
        reason: CancelCause,
        qty_cancelled: Qty,
    }
    /// A modify took effect.
    Modified = 0x24, ServerToClient {
        acct_seq: u64,
        order_id: OrderId,
        request_id: ClientOrderId,
        price: Price,
        /// The new open quantity.
        leaves: Qty,
        /// 1: the order kept its time priority (a pure quantity decrease).
        priority_kept: bool,
    }
    /// A cancel, cancel-all or modify was rejected (`acct_seq` 0: by the gateway).
    RequestRejected = 0x25, ServerToClient {
        acct_seq: u64,
        request_id: ClientOrderId,
        request: RequestKind,
        order_id: OrderId,
        reason: u16,
    }
    /// A cancel, cancel-all or modify was resent with the same key and content: nothing was
    /// done again. `outcome_code` 0 = it had succeeded, else its reject code.
    RequestResent = 0x26, ServerToClient {
        acct_seq: u64,
        request_id: ClientOrderId,
        request: RequestKind,
        order_id: OrderId,
        outcome_code: u16,
        /// Orders the original cancel-all cancelled (else 0).
        cancelled: u32,
    }
    /// A cancel-all finished (after its Cancelled messages).
    CancelAllDone = 0x27, ServerToClient {
        acct_seq: u64,
        request_id: ClientOrderId,
        symbol: Option<Code>,
        cancelled: u32,
    }
    /// A cash or share movement of the account outside trading (deposit, withdrawal,
    /// adjustment, reversal) was created or changed status.
    TransactionUpdate = 0x28, ServerToClient {
        acct_seq: u64,
        tx_id: TxId,
        tx_type: TxType,
        /// The previous status (0: just created).
        from: Option<TxStatus>,
        to: TxStatus,
        resent: bool,
        /// All NUL: KRW; else the shares of this symbol.
        asset: Option<Code>,
        /// DEPOSIT, WITHDRAWAL: the amount requested (positive). ADJUSTMENT (transfers
        /// included) and REVERSAL: the signed change to the account's balance of `asset`
        /// (a reversal of a deposit is negative, of a withdrawal positive).
        amount: Amount,
        external_ref: ExternalRef,
        /// For a reversal: the reversed transaction; for a reversed one: its reversal (else 0).
        linked_tx_id: TxId,
    }
    /// The account was opened (its first sequenced message).
    AccountOpened = 0x29, ServerToClient {
        acct_seq: u64,
        account: AccountId,
        owner: ExternalRef,
        resent: bool,
    }
    /// An admin command concerning the account was rejected (e.g. a withdrawal).
    CommandRejected = 0x2a, ServerToClient {
        acct_seq: u64,
        command: CommandKind,
        reason: u16,
    }

    // ---- Query replies (not sequenced) ----
    /// One order's state (a reply to OrderStatus or OpenOrders).
    OrderReport = 0x30, ServerToClient {
        request_id: u64,
        order_id: OrderId,
        client_order_id: ClientOrderId,
        /// All NUL if the engine's code does not fit the wire (over 6 characters).
        symbol: Option<Code>,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        state: WireOrderState,
        /// The current limit price.
        price: Price,
        /// The order's size: filled + leaves + cancelled (after a Modify, the new total).
        qty: Qty,
        /// The open quantity (0 once the order is filled, cancelled or expired).
        leaves: Qty,
        filled: Qty,
        /// What left the book unfilled when the order was cancelled or expired (else 0).
        cancelled: Qty,
    }
    /// Balances and holds (a reply to AccountQuery; PositionReports follow).
    AccountSnapshot = 0x31, ServerToClient {
        request_id: u64,
        account: AccountId,
        cash: Amount,
        /// Cash held by live buy orders and open withdrawals.
        cash_hold: Amount,
        /// cash - cash_hold.
        available: Amount,
        /// The account's last sequence number.
        acct_seq: u64,
        /// How many PositionReports follow.
        positions: u32,
    }
    /// One position (follows AccountSnapshot).
    PositionReport = 0x32, ServerToClient {
        request_id: u64,
        symbol: Option<Code>,
        qty: Qty,
        /// Shares held by live sell orders.
        qty_hold: Qty,
        /// What the shares cost, buy commission included.
        cost_basis: Amount,
        /// Profit realized by sells, net of fees and taxes.
        realized_pnl: Amount,
    }
    /// Ends every query's replies.
    QueryDone = 0x33, ServerToClient {
        request_id: u64,
        /// 0: answered; else a reject code (e.g. 2007 UnknownOrder, 9002 RateLimited).
        code: u16,
        /// How many OrderReports, PositionReports or SymbolReports were sent.
        count: u32,
    }
    /// The trading day and the fee schedule (a reply to ReferenceQuery; SymbolReports follow).
    MarketReport = 0x34, ServerToClient {
        request_id: u64,
        /// yyyymmdd (KST) of the trading day opened last (0: none yet).
        trading_day: u32,
        /// Orders are accepted in the Continuous phase only.
        phase: MarketPhase,
        /// Commission on each user side of a fill, parts per million of the notional.
        commission_ppm: i64,
        /// Sell taxes by market, parts per million of the notional (the seller pays).
        kospi_securities_transaction_ppm: i64,
        kospi_rural_special_ppm: i64,
        kosdaq_securities_transaction_ppm: i64,
        kosdaq_rural_special_ppm: i64,
        other_securities_transaction_ppm: i64,
        other_rural_special_ppm: i64,
    }
    /// One listed symbol (follows MarketReport).
    SymbolReport = 0x35, ServerToClient {
        request_id: u64,
        symbol_id: u32,
        /// All NUL if the engine's code does not fit the wire (over 6 characters).
        code: Option<Code>,
        name: SymbolName,
        /// Which sell taxes apply.
        market: Market,
        /// Valid prices: multiples of the tick at that price (the KRX table or a fixed tick).
        tick_rule: WireTickRule,
        /// Today's base price (the previous close): the band's centre.
        base_price: Price,
        /// 1: prices must lie within [lower_limit, upper_limit] (the daily +-30% band).
        banded: bool,
        /// Today's lowest valid price (0: no band).
        lower_limit: Price,
        /// Today's highest valid price (0: no band).
        upper_limit: Price,
        /// Quantities are multiples of this.
        lot_size: Qty,
        /// The last trade price (0: no trade yet).
        last_price: Price,
    }

    // ---- Admin session: requests (each answered by one AdminResult or TokenIssued) ----
    /// Opens a trading account; resending the same owner returns the same account.
    OpenAccount = 0x40, AdminToServer {
        /// Echoed in the AdminResult.
        request_id: u64,
        owner: ExternalRef,
    }
    /// Posts a bank deposit that has arrived.
    Deposit = 0x41, AdminToServer {
        request_id: u64,
        account: AccountId,
        amount: Amount,
        /// Unique per account: a resend is recognized.
        external_ref: ExternalRef,
    }
    /// Creates a PENDING withdrawal (its cash is held until confirmed or failed).
    Withdraw = 0x42, AdminToServer {
        request_id: u64,
        account: AccountId,
        amount: Amount,
        external_ref: ExternalRef,
    }
    /// Confirms a PENDING or UNKNOWN external transaction (POSTED).
    ConfirmTransaction = 0x43, AdminToServer {
        request_id: u64,
        tx_id: TxId,
    }
    /// Fails a PENDING or UNKNOWN external transaction (FAILED; holds released).
    FailTransaction = 0x44, AdminToServer {
        request_id: u64,
        tx_id: TxId,
    }
    /// Reverses a POSTED deposit, withdrawal or adjustment.
    ReverseTransaction = 0x45, AdminToServer {
        request_id: u64,
        tx_id: TxId,
    }
    /// Lists a symbol.
    RegisterSymbol = 0x46, AdminToServer {
        request_id: u64,
        code: Code,
        name: SymbolName,
        market: Market,
        /// A KRX-table rule must carry tick 0, a fixed tick must be positive (else 1004).
        tick_rule: WireTickRule,
        base_price: Price,
        /// 1: a daily +-30% band around the base price.
        banded: bool,
        lot_size: Qty,
    }
    /// Sets commission and tax rates (parts per million).
    SetFeeSchedule = 0x47, AdminToServer {
        request_id: u64,
        commission_ppm: i64,
        kospi_securities_transaction_ppm: i64,
        kospi_rural_special_ppm: i64,
        kosdaq_securities_transaction_ppm: i64,
        kosdaq_rural_special_ppm: i64,
        other_securities_transaction_ppm: i64,
        other_rural_special_ppm: i64,
    }
    /// Asks for an account's login token (answered by TokenIssued or AdminResult).
    IssueToken = 0x48, AdminToServer {
        request_id: u64,
        account: AccountId,
    }
    /// Shares arrive from outside (a transfer from another broker): posted at once, at the
    /// cost `price` per share, which the position's cost basis takes on. Reversible with
    /// ReverseTransaction (the shares leave at their average cost).
    TransferIn = 0x49, AdminToServer {
        request_id: u64,
        account: AccountId,
        symbol: Code,
        /// Shares (positive).
        qty: Qty,
        /// What each share cost (KRW, 0: no cost), added to the cost basis as price x qty.
        price: Price,
        /// Unique per account: a resend is recognized (a different qty or price: 4008).
        external_ref: ExternalRef,
    }
    /// Shares leave to outside (a transfer to another broker): posted at once; they take
    /// their average cost out of the cost basis and realize nothing.
    TransferOut = 0x4a, AdminToServer {
        request_id: u64,
        account: AccountId,
        symbol: Code,
        /// Shares (positive; at most the shares not held by live sell orders, else 4010).
        qty: Qty,
        external_ref: ExternalRef,
    }

    // ---- Admin session: replies ----
    /// The outcome of one admin request.
    AdminResult = 0x50, ServerToClient {
        request_id: u64,
        /// 0: done; else a reject code.
        code: u16,
        /// The type byte of the request this answers (0x40-0x4a).
        request_type: u8,
        /// 1: a resend of an earlier request was recognized; nothing new was done.
        resent: bool,
        /// The account concerned (OpenAccount: the new account), or 0.
        account: AccountId,
        /// The transaction concerned (deposits, withdrawals, transfers, confirmations,
        /// reversals), or 0.
        tx_id: TxId,
        /// The transaction's status afterwards (0: none).
        tx_status: Option<TxStatus>,
        /// RegisterSymbol: the new symbol's engine id; else 0.
        symbol_id: u32,
    }
    /// An account's login token.
    TokenIssued = 0x51, ServerToClient {
        request_id: u64,
        account: AccountId,
        token: [u8; 32],
    }
}

impl From<Message> for Vec<u8> {
    fn from(m: Message) -> Vec<u8> {
        m.to_frame()
    }
}

/// The layout tables of every message, as docs/protocol.md prints them.
pub fn layout_markdown() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for m in MESSAGES {
        let dir = match m.direction {
            Direction::ClientToServer => "client -> server",
            Direction::AdminToServer => "admin client -> server",
            Direction::ServerToClient => "server -> client",
            Direction::Both => "either way",
        };
        let _ = writeln!(out, "### {} (type `{:#04x}`, {dir})\n", m.name, m.msg_type);
        let _ = writeln!(out, "{}\n", m.doc.trim());
        let _ = writeln!(
            out,
            "Frame: {} bytes (length field = {}).\n",
            HEADER_BYTES + m.body_len,
            1 + m.body_len
        );
        if m.fields.is_empty() {
            let _ = writeln!(out, "No body.\n");
            continue;
        }
        let _ = writeln!(out, "| offset | size | field | type | notes |");
        let _ = writeln!(out, "|---:|---:|---|---|---|");
        let mut at = HEADER_BYTES;
        for f in m.fields {
            let _ = writeln!(
                out,
                "| {at} | {} | `{}` | {} | {} |",
                f.size,
                f.name,
                f.wire_type,
                f.doc.trim()
            );
            at += f.size;
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_unique_and_bodies_fit_the_length_field() {
        let mut seen = std::collections::BTreeSet::new();
        for m in MESSAGES {
            assert!(
                seen.insert(m.msg_type),
                "duplicate type {:#04x}",
                m.msg_type
            );
            assert!(m.body_len < u16::MAX as usize);
            assert_eq!(body_len(m.msg_type), Some(m.body_len));
        }
        assert_eq!(body_len(0), None);
    }

    #[test]
    fn sizes_are_pinned() {
        // Layouts are part of the protocol: changing one breaks clients.
        assert_eq!(Login::BODY_LEN, 47);
        assert_eq!(NewOrder::BODY_LEN, 33);
        assert_eq!(OrderAccepted::BODY_LEN, 50);
        assert_eq!(Execution::BODY_LEN, 88);
        assert_eq!(Heartbeat::BODY_LEN, 0);
    }
}
