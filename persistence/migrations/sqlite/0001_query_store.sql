-- Kuku's query store, schema 1, SQLite dialect (the MySQL twin is
-- ../mysql/0001_query_store.sql: same tables, columns and indexes). The journal is the truth;
-- these tables are derived from its events by the writer. docs/persistence.md names the query
-- each index serves. Text compares byte for byte (SQLite's default BINARY collation), like the
-- engine's keys.

CREATE TABLE kuku_checkpoint (
    id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    ts_ns  INTEGER NOT NULL
);
INSERT INTO kuku_checkpoint (id, epoch, seq, ts_ns) VALUES (1, 0, 0, 0);

CREATE TABLE symbols (
    symbol_id       INTEGER NOT NULL PRIMARY KEY,
    code            TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    market          TEXT    NOT NULL,
    lot_size        INTEGER NOT NULL,
    registered_seq  INTEGER NOT NULL
);
CREATE UNIQUE INDEX uk_symbols_code ON symbols (code);

CREATE TABLE accounts (
    account_id    INTEGER NOT NULL PRIMARY KEY,
    owner         TEXT    NOT NULL,
    opened_seq    INTEGER NOT NULL,
    opened_ts_ns  INTEGER NOT NULL
);
CREATE UNIQUE INDEX uk_accounts_owner ON accounts (owner);

CREATE TABLE balances (
    account_id   INTEGER NOT NULL PRIMARY KEY,
    cash         INTEGER NOT NULL,
    cash_hold    INTEGER NOT NULL,
    updated_seq  INTEGER NOT NULL
);

CREATE TABLE positions (
    account_id    INTEGER NOT NULL,
    symbol_id     INTEGER NOT NULL,
    qty           INTEGER NOT NULL,
    hold          INTEGER NOT NULL,
    cost_basis    INTEGER NOT NULL,
    realized_pnl  INTEGER NOT NULL,
    updated_seq   INTEGER NOT NULL,
    PRIMARY KEY (account_id, symbol_id)
);

CREATE TABLE ledger_transactions (
    tx_id              INTEGER NOT NULL PRIMARY KEY,
    tx_type            TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    account_id         INTEGER NOT NULL,
    asset_symbol_id    INTEGER NOT NULL,
    amount             INTEGER NOT NULL,
    external_ref       TEXT    NULL,
    trade_id           INTEGER NULL,
    reverses_tx_id     INTEGER NULL,
    reversed_by_tx_id  INTEGER NULL,
    created_seq        INTEGER NOT NULL,
    created_ts_ns      INTEGER NOT NULL,
    updated_seq        INTEGER NOT NULL
);
CREATE UNIQUE INDEX uk_ledger_tx_external_ref ON ledger_transactions (account_id, external_ref);
CREATE INDEX ix_ledger_tx_account ON ledger_transactions (account_id, tx_id);

CREATE TABLE ledger_entries (
    tx_id            INTEGER NOT NULL,
    line_no          INTEGER NOT NULL,
    ledger_account   TEXT    NOT NULL,
    account_id       INTEGER NOT NULL,
    asset_symbol_id  INTEGER NOT NULL,
    amount           INTEGER NOT NULL,
    line_kind        TEXT    NOT NULL,
    seq              INTEGER NOT NULL,
    PRIMARY KEY (tx_id, line_no)
);
CREATE INDEX ix_ledger_entries_account ON ledger_entries (account_id, tx_id);

CREATE TABLE orders (
    order_id         INTEGER NOT NULL PRIMARY KEY,
    account_id       INTEGER NOT NULL,
    client_order_id  INTEGER NOT NULL,
    symbol_id        INTEGER NOT NULL,
    side             TEXT    NOT NULL,
    order_type       TEXT    NOT NULL,
    tif              TEXT    NOT NULL,
    price            INTEGER NOT NULL,
    qty              INTEGER NOT NULL,
    leaves           INTEGER NOT NULL,
    filled           INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    is_open          INTEGER NOT NULL,
    cancel_reason    TEXT    NULL,
    accepted_seq     INTEGER NOT NULL,
    accepted_ts_ns   INTEGER NOT NULL,
    updated_seq      INTEGER NOT NULL
);
CREATE INDEX ix_orders_account ON orders (account_id, order_id);
CREATE INDEX ix_orders_open ON orders (is_open, account_id);

CREATE TABLE trades (
    trade_id            INTEGER NOT NULL PRIMARY KEY,
    seq                 INTEGER NOT NULL,
    ts_ns               INTEGER NOT NULL,
    symbol_id           INTEGER NOT NULL,
    price               INTEGER NOT NULL,
    qty                 INTEGER NOT NULL,
    taker_side          TEXT    NOT NULL,
    maker_order_id      INTEGER NOT NULL,
    maker_account_id    INTEGER NOT NULL,
    taker_order_id      INTEGER NOT NULL,
    taker_account_id    INTEGER NOT NULL,
    buyer_commission    INTEGER NOT NULL,
    seller_commission   INTEGER NOT NULL,
    securities_tax      INTEGER NOT NULL,
    rural_tax           INTEGER NOT NULL,
    tx_id               INTEGER NOT NULL
);
CREATE INDEX ix_trades_maker_account ON trades (maker_account_id, trade_id);
CREATE INDEX ix_trades_taker_account ON trades (taker_account_id, trade_id);
