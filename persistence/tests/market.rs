//! Reference data and candles round trip through the real MariaDB and SQLite.

use kuku_engine::{Price, Qty, SymbolCode, TickRule};
use kuku_marketdata::{
    Candle, Interval, Isin, ListingStatus, Mapping, MarketCode, ReferenceSymbol, TimestampNs,
};
use kuku_persistence::testkit::TestDatabase;
use kuku_persistence::{ConnectOptions, Database, PersistenceError, block_on};

fn code(s: &str) -> SymbolCode {
    SymbolCode::new(s).expect("valid")
}

fn symbols() -> Vec<ReferenceSymbol> {
    vec![
        ReferenceSymbol {
            code: code("000660"),
            isin: Isin::parse("KR7000660001").expect("valid"),
            name_ko: "SK하이닉스".into(),
            name_en: "SK hynix".into(),
            market: MarketCode::Kospi,
            tick_rule: TickRule::Krx,
            lot_size: Qty(1),
            status: ListingStatus::Listed,
        },
        ReferenceSymbol {
            code: code("035720"),
            isin: Isin::parse("KR7035720002").expect("valid"),
            name_ko: "카카오".into(),
            name_en: "Kakao".into(),
            market: MarketCode::Kosdaq,
            tick_rule: TickRule::Fixed(5),
            lot_size: Qty(10),
            status: ListingStatus::Suspended,
        },
    ]
}

fn round_trip(db: &TestDatabase) {
    block_on(async {
        let store = Database::connect(db.url(), &ConnectOptions::default())
            .await
            .expect("connects and migrates");
        assert_eq!(
            store.markets().await.expect("markets"),
            [MarketCode::Kosdaq, MarketCode::Kospi]
        );
        for s in symbols() {
            store
                .register_reference_symbol(&s)
                .await
                .expect("registered");
        }
        // Registering again replaces (a rename).
        let mut renamed = symbols()[0].clone();
        renamed.name_en = "SK hynix Inc.".into();
        store
            .register_reference_symbol(&renamed)
            .await
            .expect("replaced");
        let mut expected = symbols();
        expected[0] = renamed;
        assert_eq!(store.reference_symbols().await.expect("read"), expected);

        let kis = |external: &str, symbol: &str| Mapping {
            provider: "kis".into(),
            external_code: external.into(),
            symbol: code(symbol),
        };
        store
            .map_symbol(&kis("000660", "000660"))
            .await
            .expect("mapped");
        store
            .map_symbol(&kis("A035720", "000660"))
            .await
            .expect("mapped");
        store
            .map_symbol(&kis("A035720", "035720"))
            .await
            .expect("remapped");
        let refused = store.map_symbol(&kis("005930", "005930")).await;
        assert!(
            matches!(refused, Err(PersistenceError::Invalid(_))),
            "{refused:?}"
        );
        let book = store.reference_book().await.expect("loads");
        assert_eq!(book.resolve("kis", "A035720"), Some(code("035720")));
        assert_eq!(book.resolve("kis", "005930"), None);
        assert_eq!(book.mappings(None).len(), 2);
        assert_eq!(book.symbols(Some(MarketCode::Kosdaq)).len(), 1);

        let minute = 60_000_000_000;
        let candle = |start: u64, close: i64, trades: u64| Candle {
            symbol: code("000660"),
            interval: Interval::M1,
            start_ns: TimestampNs(1_772_668_800_000_000_000 + start * minute),
            open: Price(180_000),
            high: Price(181_000.max(close)),
            low: Price(179_000),
            close: Price(close),
            volume: i64::MAX,
            trades,
        };
        store
            .upsert_candles(&[candle(0, 180_100, 1), candle(1, 180_200, 1)])
            .await
            .expect("written");
        store
            .upsert_candles(&[candle(1, 182_000, 2)])
            .await
            .expect("updated");
        let from = TimestampNs(1_772_668_800_000_000_000);
        let read = store
            .candles(
                code("000660"),
                Interval::M1,
                from,
                TimestampNs(u64::MAX),
                100,
            )
            .await
            .expect("read");
        assert_eq!(read, [candle(0, 180_100, 1), candle(1, 182_000, 2)]);
        let other = store
            .candles(
                code("000660"),
                Interval::D1,
                from,
                TimestampNs(u64::MAX),
                100,
            )
            .await
            .expect("read");
        assert!(other.is_empty());
        let one = store
            .candles(code("000660"), Interval::M1, from, TimestampNs(u64::MAX), 1)
            .await
            .expect("read");
        assert_eq!(one, [candle(0, 180_100, 1)], "the oldest from `from`");
        let newest = store
            .newest_candles(code("000660"), Interval::M1, from, TimestampNs(u64::MAX), 1)
            .await
            .expect("read");
        assert_eq!(newest, [candle(1, 182_000, 2)], "the newest before `to`");
        let both = store
            .newest_candles(code("000660"), Interval::M1, from, TimestampNs(u64::MAX), 5)
            .await
            .expect("read");
        assert_eq!(both, read, "oldest first");
        let day = Candle {
            interval: Interval::D1,
            ..candle(0, 180_500, 7)
        };
        store.upsert_candles(&[day]).await.expect("written");
        let latest = store.latest_candles().await.expect("read");
        assert_eq!(
            latest,
            [day, candle(1, 182_000, 2)],
            "the newest of each series, by code and interval"
        );
        store.close().await;
    });
}

#[test]
fn reference_data_and_candles_round_trip_through_mariadb() {
    round_trip(&TestDatabase::mysql());
}

#[test]
fn reference_data_and_candles_round_trip_through_sqlite() {
    round_trip(&TestDatabase::sqlite());
}
