-- Market data and reference data, MySQL / MariaDB dialect (the SQLite twin is
-- ../sqlite/0003_market_data.sql). These tables are written by the market-data service and
-- the `kuku reference` commands, not derived from the journal: reconcile does not compare
-- them (docs/market-data.md).

-- The markets Kuku lists symbols of.
CREATE TABLE markets (
    market_code        VARCHAR(8)  NOT NULL PRIMARY KEY,
    name               VARCHAR(32) NOT NULL,
    operator           VARCHAR(16) NOT NULL,
    timezone           VARCHAR(32) NOT NULL,
    session_open_kst   CHAR(5)     NOT NULL,
    session_close_kst  CHAR(5)     NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;
INSERT INTO markets VALUES ('KOSPI', 'KRX KOSPI', 'KRX', 'Asia/Seoul', '09:00', '15:30');
INSERT INTO markets VALUES ('KOSDAQ', 'KRX KOSDAQ', 'KRX', 'Asia/Seoul', '09:00', '15:30');

-- A symbol as its market lists it (the engine's `symbols` table keeps what matching needs).
CREATE TABLE reference_symbols (
    code            VARCHAR(12) NOT NULL PRIMARY KEY,
    isin            CHAR(12)    NOT NULL,
    name_ko         VARCHAR(64) NOT NULL,
    name_en         VARCHAR(64) NOT NULL,
    market_code     VARCHAR(8)  NOT NULL,
    tick_rule       VARCHAR(24) NOT NULL,
    lot_size        BIGINT      NOT NULL,
    listing_status  VARCHAR(12) NOT NULL,
    UNIQUE KEY uk_reference_symbols_isin (isin),
    CONSTRAINT fk_reference_symbols_market FOREIGN KEY (market_code) REFERENCES markets (market_code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- A provider's code for a symbol: (provider, external code) resolves to one symbol.
CREATE TABLE symbol_mappings (
    provider       VARCHAR(16) NOT NULL,
    external_code  VARCHAR(32) NOT NULL,
    code           VARCHAR(12) NOT NULL,
    PRIMARY KEY (provider, external_code),
    KEY ix_symbol_mappings_code (code),
    CONSTRAINT fk_symbol_mappings_symbol FOREIGN KEY (code) REFERENCES reference_symbols (code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Candles built from the market's ticks; an interval without trades has no row.
-- `start_ns`: the interval's start, Unix nanoseconds on the KST grid.
CREATE TABLE candles (
    code          VARCHAR(12) NOT NULL,
    interval_code VARCHAR(4)  NOT NULL,
    start_ns      BIGINT      NOT NULL,
    open_price    BIGINT      NOT NULL,
    high_price    BIGINT      NOT NULL,
    low_price     BIGINT      NOT NULL,
    close_price   BIGINT      NOT NULL,
    volume        BIGINT      NOT NULL,
    trades        BIGINT      NOT NULL,
    PRIMARY KEY (code, interval_code, start_ns)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;
