-- Market data and reference data, SQLite dialect (the MySQL twin is
-- ../mysql/0003_market_data.sql). These tables are written by the market-data service and
-- the `kuku reference` commands, not derived from the journal: reconcile does not compare
-- them (docs/market-data.md).

CREATE TABLE markets (
    market_code        TEXT NOT NULL PRIMARY KEY,
    name               TEXT NOT NULL,
    operator           TEXT NOT NULL,
    timezone           TEXT NOT NULL,
    session_open_kst   TEXT NOT NULL,
    session_close_kst  TEXT NOT NULL
);
INSERT INTO markets VALUES ('KOSPI', 'KRX KOSPI', 'KRX', 'Asia/Seoul', '09:00', '15:30');
INSERT INTO markets VALUES ('KOSDAQ', 'KRX KOSDAQ', 'KRX', 'Asia/Seoul', '09:00', '15:30');

CREATE TABLE reference_symbols (
    code            TEXT    NOT NULL PRIMARY KEY,
    isin            TEXT    NOT NULL,
    name_ko         TEXT    NOT NULL,
    name_en         TEXT    NOT NULL,
    market_code     TEXT    NOT NULL REFERENCES markets (market_code),
    tick_rule       TEXT    NOT NULL,
    lot_size        INTEGER NOT NULL,
    listing_status  TEXT    NOT NULL
);
CREATE UNIQUE INDEX uk_reference_symbols_isin ON reference_symbols (isin);

CREATE TABLE symbol_mappings (
    provider       TEXT NOT NULL,
    external_code  TEXT NOT NULL,
    code           TEXT NOT NULL REFERENCES reference_symbols (code),
    PRIMARY KEY (provider, external_code)
);
CREATE INDEX ix_symbol_mappings_code ON symbol_mappings (code);

CREATE TABLE candles (
    code          TEXT    NOT NULL,
    interval_code TEXT    NOT NULL,
    start_ns      INTEGER NOT NULL,
    open_price    INTEGER NOT NULL,
    high_price    INTEGER NOT NULL,
    low_price     INTEGER NOT NULL,
    close_price   INTEGER NOT NULL,
    volume        INTEGER NOT NULL,
    trades        INTEGER NOT NULL,
    PRIMARY KEY (code, interval_code, start_ns)
);
