-- Kuku's query store, schema 1, MySQL / MariaDB dialect (the SQLite twin is
-- ../sqlite/0001_query_store.sql). The journal is the truth; these tables are derived from
-- its events by the writer. docs/persistence.md names the query each index serves.
--
-- Conventions: every number is a signed BIGINT (ids, KRW amounts, share counts, seqs,
-- timestamps in nanoseconds since the Unix epoch); `asset_symbol_id` 0 means KRW, otherwise
-- the shares of that symbol; `account_id` 0 is SYSTEM_MARKET (and the system ledger accounts
-- in ledger_entries). Strings use a binary, no-pad collation: the engine compares keys byte
-- for byte, so must the unique indexes.

-- The last command whose rows are all here, written in the same transaction as those rows.
CREATE TABLE kuku_checkpoint (
    id          INT    NOT NULL PRIMARY KEY,
    epoch       BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    ts_ns       BIGINT NOT NULL,
    CONSTRAINT ck_checkpoint_single_row CHECK (id = 1)
) ENGINE = InnoDB;
INSERT INTO kuku_checkpoint (id, epoch, seq, ts_ns) VALUES (1, 0, 0, 0);

CREATE TABLE symbols (
    symbol_id       BIGINT      NOT NULL PRIMARY KEY,
    code            VARCHAR(12) NOT NULL,
    name            VARCHAR(48) NOT NULL,
    market          VARCHAR(8)  NOT NULL,
    lot_size        BIGINT      NOT NULL,
    registered_seq  BIGINT      NOT NULL,
    UNIQUE KEY uk_symbols_code (code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE accounts (
    account_id    BIGINT      NOT NULL PRIMARY KEY,
    owner         VARCHAR(32) NOT NULL,
    opened_seq    BIGINT      NOT NULL,
    opened_ts_ns  BIGINT      NOT NULL,
    UNIQUE KEY uk_accounts_owner (owner)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Read model: the account's cash (the USER_CASH balance) and what is held.
CREATE TABLE balances (
    account_id   BIGINT NOT NULL PRIMARY KEY,
    cash         BIGINT NOT NULL,
    cash_hold    BIGINT NOT NULL,
    updated_seq  BIGINT NOT NULL
) ENGINE = InnoDB;

-- Read model: shares (the USER_SECURITIES balance), held shares, cost and realized profit.
CREATE TABLE positions (
    account_id    BIGINT NOT NULL,
    symbol_id     BIGINT NOT NULL,
    qty           BIGINT NOT NULL,
    hold          BIGINT NOT NULL,
    cost_basis    BIGINT NOT NULL,
    realized_pnl  BIGINT NOT NULL,
    updated_seq   BIGINT NOT NULL,
    PRIMARY KEY (account_id, symbol_id)
) ENGINE = InnoDB;

CREATE TABLE ledger_transactions (
    tx_id              BIGINT      NOT NULL PRIMARY KEY,
    tx_type            VARCHAR(12) NOT NULL,
    status             VARCHAR(8)  NOT NULL,
    account_id         BIGINT      NOT NULL,
    asset_symbol_id    BIGINT      NOT NULL,
    amount             BIGINT      NOT NULL,
    external_ref       VARCHAR(32) NULL,
    trade_id           BIGINT      NULL,
    reverses_tx_id     BIGINT      NULL,
    reversed_by_tx_id  BIGINT      NULL,
    created_seq        BIGINT      NOT NULL,
    created_ts_ns      BIGINT      NOT NULL,
    updated_seq        BIGINT      NOT NULL,
    UNIQUE KEY uk_ledger_tx_external_ref (account_id, external_ref),
    KEY ix_ledger_tx_account (account_id, tx_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE ledger_entries (
    tx_id            BIGINT      NOT NULL,
    line_no          BIGINT      NOT NULL,
    ledger_account   VARCHAR(16) NOT NULL,
    account_id       BIGINT      NOT NULL,
    asset_symbol_id  BIGINT      NOT NULL,
    amount           BIGINT      NOT NULL,
    line_kind        VARCHAR(12) NOT NULL,
    seq              BIGINT      NOT NULL,
    PRIMARY KEY (tx_id, line_no),
    KEY ix_ledger_entries_account (account_id, tx_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE orders (
    order_id         BIGINT      NOT NULL PRIMARY KEY,
    account_id       BIGINT      NOT NULL,
    client_order_id  BIGINT      NOT NULL,
    symbol_id        BIGINT      NOT NULL,
    side             VARCHAR(4)  NOT NULL,
    order_type       VARCHAR(6)  NOT NULL,
    tif              VARCHAR(3)  NOT NULL,
    price            BIGINT      NOT NULL,
    qty              BIGINT      NOT NULL,
    leaves           BIGINT      NOT NULL,
    filled           BIGINT      NOT NULL,
    status           VARCHAR(16) NOT NULL,
    is_open          BIGINT      NOT NULL,
    cancel_reason    VARCHAR(16) NULL,
    accepted_seq     BIGINT      NOT NULL,
    accepted_ts_ns   BIGINT      NOT NULL,
    updated_seq      BIGINT      NOT NULL,
    KEY ix_orders_account (account_id, order_id),
    KEY ix_orders_open (is_open, account_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE trades (
    trade_id            BIGINT     NOT NULL PRIMARY KEY,
    seq                 BIGINT     NOT NULL,
    ts_ns               BIGINT     NOT NULL,
    symbol_id           BIGINT     NOT NULL,
    price               BIGINT     NOT NULL,
    qty                 BIGINT     NOT NULL,
    taker_side          VARCHAR(4) NOT NULL,
    maker_order_id      BIGINT     NOT NULL,
    maker_account_id    BIGINT     NOT NULL,
    taker_order_id      BIGINT     NOT NULL,
    taker_account_id    BIGINT     NOT NULL,
    buyer_commission    BIGINT     NOT NULL,
    seller_commission   BIGINT     NOT NULL,
    securities_tax      BIGINT     NOT NULL,
    rural_tax           BIGINT     NOT NULL,
    tx_id               BIGINT     NOT NULL,
    KEY ix_trades_maker_account (maker_account_id, trade_id),
    KEY ix_trades_taker_account (taker_account_id, trade_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;
