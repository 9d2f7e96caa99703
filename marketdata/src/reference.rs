//! The reference domain: markets (KRX KOSPI and KOSDAQ), symbols as the market lists them
//! (code, ISIN, Korean and English names, market, tick rule, lot, listing status) and the
//! external mappings a provider's code resolves through (provider + external code -> symbol).
//!
//! The engine keeps only what matching and fees need (`RegisterSymbol`: code, short name,
//! market, tick rule, band, lot); everything a user or a provider adapter reads about a
//! symbol lives here and in the database's reference tables.
//!
//! **Invariants**: every value here was validated by its constructor (an ISIN's check digit,
//! name lengths, a provider's spelling); a mapping points at a registered symbol; one
//! (provider, external code) resolves to exactly one symbol.
//!
//! **Performance**: `BTreeMap`s: O(log n) lookups; the book is read-mostly (admin commands
//! change it).
//!
//! **Known limitations**: no history of changes (a rename overwrites); no corporate actions.

use kuku_engine::{Qty, SymbolCode, TickRule};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest name (Korean or English) in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// The longest provider name in bytes.
pub const PROVIDER_BYTES_MAX: usize = 16;
/// The longest external code in bytes.
pub const EXTERNAL_CODE_BYTES_MAX: usize = 32;

/// Why reference data is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("the market {0:?} is not KOSPI or KOSDAQ")]
    UnknownMarket(String),
    #[error("the symbol code {0:?} is not 1 to 12 ASCII letters or digits")]
    InvalidCode(String),
    #[error("the ISIN {0:?} is not 2 letters, 9 letters or digits and a valid check digit")]
    InvalidIsin(String),
    #[error("the {field} {value:?} must be 1 to {max} characters without control characters", max = NAME_CHARS_MAX)]
    InvalidName { field: &'static str, value: String },
    #[error("the lot size {0} must be in 1..={max}", max = kuku_engine::limits::QTY_MAX)]
    InvalidLotSize(i64),
    #[error("the tick rule {0:?} is not `krx` or `fixed:N` with N in 1..=1000000000")]
    InvalidTickRule(String),
    #[error("the listing status {0:?} is not listed, suspended or delisted")]
    InvalidStatus(String),
    #[error("the provider {0:?} must be 1 to {max} lowercase letters, digits or '-'", max = PROVIDER_BYTES_MAX)]
    InvalidProvider(String),
    #[error("the external code {0:?} must be 1 to {max} printable ASCII characters", max = EXTERNAL_CODE_BYTES_MAX)]
    InvalidExternalCode(String),
    #[error("no symbol {0} is registered in the reference data")]
    UnknownSymbol(String),
}

/// A market Kuku lists symbols of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MarketCode {
    #[serde(rename = "KOSPI")]
    Kospi,
    #[serde(rename = "KOSDAQ")]
    Kosdaq,
}

impl MarketCode {
    pub const ALL: [MarketCode; 2] = [MarketCode::Kospi, MarketCode::Kosdaq];

    pub fn as_str(self) -> &'static str {
        match self {
            MarketCode::Kospi => "KOSPI",
            MarketCode::Kosdaq => "KOSDAQ",
        }
    }

    pub fn parse(s: &str) -> Result<MarketCode, ReferenceError> {
        MarketCode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ReferenceError::UnknownMarket(s.to_owned()))
    }

    /// The engine's market of this code.
    pub fn engine_market(self) -> kuku_engine::Market {
        match self {
            MarketCode::Kospi => kuku_engine::Market::Kospi,
            MarketCode::Kosdaq => kuku_engine::Market::Kosdaq,
        }
    }

    /// What Kuku knows of the market (both are KRX equity markets with one session).
    pub fn info(self) -> Market {
        Market {
            code: self,
            name: match self {
                MarketCode::Kospi => "KRX KOSPI",
                MarketCode::Kosdaq => "KRX KOSDAQ",
            },
            operator: "KRX",
            timezone: "Asia/Seoul",
            session_open_kst: "09:00",
            session_close_kst: "15:30",
        }
    }
}

/// A market's description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Market {
    pub code: MarketCode,
    pub name: &'static str,
    pub operator: &'static str,
    pub timezone: &'static str,
    pub session_open_kst: &'static str,
    pub session_close_kst: &'static str,
}

/// An ISO 6166 ISIN (e.g. KR7005930003), check digit verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Isin([u8; 12]);

impl Isin {
    pub fn parse(s: &str) -> Result<Isin, ReferenceError> {
        let bad = || ReferenceError::InvalidIsin(s.to_owned());
        let bytes: [u8; 12] = s.as_bytes().try_into().map_err(|_| bad())?;
        let shape = bytes[..2].iter().all(u8::is_ascii_uppercase)
            && bytes[2..11]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && bytes[11].is_ascii_digit();
        if !shape || isin_check_digit(&bytes[..11]) != bytes[11] - b'0' {
            return Err(bad());
        }
        Ok(Isin(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("an ISIN is ASCII by construction")
    }
}

/// The Luhn check digit over the ISIN's first eleven characters, letters expanded to two
/// digits (A = 10 ... Z = 35).
fn isin_check_digit(body: &[u8]) -> u8 {
    let mut digits: Vec<u8> = Vec::with_capacity(22);
    for &b in body {
        if b.is_ascii_digit() {
            digits.push(b - b'0');
        } else {
            let v = b - b'A' + 10;
            digits.extend([v / 10, v % 10]);
        }
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let doubled = d * 2;
                doubled / 10 + doubled % 10
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

impl Serialize for Isin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Isin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Isin, D::Error> {
        let s = String::deserialize(d)?;
        Isin::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether a symbol trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingStatus {
    Listed,
    /// Trading halted (a KRX 거래정지).
    Suspended,
    Delisted,
}

impl ListingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ListingStatus::Listed => "listed",
            ListingStatus::Suspended => "suspended",
            ListingStatus::Delisted => "delisted",
        }
    }

    pub fn parse(s: &str) -> Result<ListingStatus, ReferenceError> {
        [
            ListingStatus::Listed,
            ListingStatus::Suspended,
            ListingStatus::Delisted,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
        .ok_or_else(|| ReferenceError::InvalidStatus(s.to_owned()))
    }
}

/// `krx` or `fixed:N`, as the database and the command line write a tick rule.
pub fn tick_rule_to_str(rule: TickRule) -> String {
    match rule {
        TickRule::Krx => "krx".to_owned(),
        TickRule::Fixed(n) => format!("fixed:{n}"),
    }
}

pub fn parse_tick_rule(s: &str) -> Result<TickRule, ReferenceError> {
    let bad = || ReferenceError::InvalidTickRule(s.to_owned());
    if s == "krx" {
        return Ok(TickRule::Krx);
    }
    let n: i64 = s
        .strip_prefix("fixed:")
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    if !(1..=kuku_engine::limits::PRICE_MAX).contains(&n) {
        return Err(bad());
    }
    Ok(TickRule::Fixed(n))
}

/// A symbol as the market lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceSymbol {
    pub code: SymbolCode,
    pub isin: Isin,
    pub name_ko: String,
    pub name_en: String,
    pub market: MarketCode,
    pub tick_rule: TickRule,
    pub lot_size: Qty,
    pub status: ListingStatus,
}

impl ReferenceSymbol {
    /// Checks every field (the constructor of values that come from outside).
    pub fn validate(&self) -> Result<(), ReferenceError> {
        let code = self.code.as_str();
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ReferenceError::InvalidCode(code.to_owned()));
        }
        check_name("Korean name", &self.name_ko)?;
        check_name("English name", &self.name_en)?;
        if !(1..=kuku_engine::limits::QTY_MAX).contains(&self.lot_size.0) {
            return Err(ReferenceError::InvalidLotSize(self.lot_size.0));
        }
        if let TickRule::Fixed(n) = self.tick_rule
            && !(1..=kuku_engine::limits::PRICE_MAX).contains(&n)
        {
            return Err(ReferenceError::InvalidTickRule(tick_rule_to_str(
                self.tick_rule,
            )));
        }
        Ok(())
    }
}

fn check_name(field: &'static str, value: &str) -> Result<(), ReferenceError> {
    let chars = value.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX || value.chars().any(char::is_control) {
        return Err(ReferenceError::InvalidName {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// A provider's code for a symbol (`kis` + `005930` -> 005930).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mapping {
    pub provider: String,
    pub external_code: String,
    pub symbol: SymbolCode,
}

impl Mapping {
    pub fn validate(&self) -> Result<(), ReferenceError> {
        let p = &self.provider;
        if p.is_empty()
            || p.len() > PROVIDER_BYTES_MAX
            || !p
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ReferenceError::InvalidProvider(p.clone()));
        }
        let e = &self.external_code;
        if e.is_empty()
            || e.len() > EXTERNAL_CODE_BYTES_MAX
            || !e.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ReferenceError::InvalidExternalCode(e.clone()));
        }
        Ok(())
    }
}

/// The reference data the market-data service keeps.
#[derive(Clone, Debug, Default)]
pub struct ReferenceBook {
    symbols: BTreeMap<SymbolCode, ReferenceSymbol>,
    mappings: BTreeMap<(String, String), SymbolCode>,
}

impl ReferenceBook {
    pub fn markets(&self) -> Vec<Market> {
        MarketCode::ALL.into_iter().map(MarketCode::info).collect()
    }

    /// Registers a symbol, or replaces what is known of it.
    pub fn register(&mut self, symbol: ReferenceSymbol) -> Result<(), ReferenceError> {
        symbol.validate()?;
        self.symbols.insert(symbol.code, symbol);
        Ok(())
    }

    /// Maps a provider's code to a registered symbol (replacing an older mapping of it).
    pub fn map(&mut self, mapping: Mapping) -> Result<(), ReferenceError> {
        mapping.validate()?;
        if !self.symbols.contains_key(&mapping.symbol) {
            return Err(ReferenceError::UnknownSymbol(mapping.symbol.to_string()));
        }
        self.mappings
            .insert((mapping.provider, mapping.external_code), mapping.symbol);
        Ok(())
    }

    pub fn symbol(&self, code: &SymbolCode) -> Option<&ReferenceSymbol> {
        self.symbols.get(code)
    }

    /// Symbols in code order, optionally of one market.
    pub fn symbols(&self, market: Option<MarketCode>) -> Vec<ReferenceSymbol> {
        self.symbols
            .values()
            .filter(|s| market.is_none_or(|m| s.market == m))
            .cloned()
            .collect()
    }

    /// The symbol a provider's code stands for.
    pub fn resolve(&self, provider: &str, external_code: &str) -> Option<SymbolCode> {
        self.mappings
            .get(&(provider.to_owned(), external_code.to_owned()))
            .copied()
    }

    /// Mappings in (provider, external code) order, optionally of one provider.
    pub fn mappings(&self, provider: Option<&str>) -> Vec<Mapping> {
        self.mappings
            .iter()
            .filter(|((p, _), _)| provider.is_none_or(|want| p == want))
            .map(|((provider, external_code), symbol)| Mapping {
                provider: provider.clone(),
                external_code: external_code.clone(),
                symbol: *symbol,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samsung() -> ReferenceSymbol {
        ReferenceSymbol {
            code: SymbolCode::new("005930").expect("valid"),
            isin: Isin::parse("KR7005930003").expect("Samsung Electronics' ISIN"),
            name_ko: "삼성전자".into(),
            name_en: "Samsung Electronics".into(),
            market: MarketCode::Kospi,
            tick_rule: TickRule::Krx,
            lot_size: Qty(1),
            status: ListingStatus::Listed,
        }
    }

    #[test]
    fn isins_with_a_valid_check_digit_parse_and_others_do_not() {
        for good in [
            "KR7005930003",
            "KR7000660001",
            "US0378331005",
            "KR7035720002",
        ] {
            assert_eq!(
                Isin::parse(good).map(|i| i.as_str().to_owned()),
                Ok(good.into())
            );
        }
        for bad in [
            "KR7005930004",
            "KR700593000",
            "kr7005930003",
            "KR70059300031",
            "",
            "KR700593000X",
        ] {
            assert!(Isin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_mapping_needs_a_registered_symbol_and_resolves_afterwards() {
        let mut book = ReferenceBook::default();
        let m = Mapping {
            provider: "kis".into(),
            external_code: "005930".into(),
            symbol: samsung().code,
        };
        assert!(matches!(
            book.map(m.clone()),
            Err(ReferenceError::UnknownSymbol(_))
        ));
        book.register(samsung()).expect("valid");
        book.map(m.clone()).expect("registered");
        assert_eq!(book.resolve("kis", "005930"), Some(samsung().code));
        assert_eq!(book.resolve("kis", "000660"), None);
        assert_eq!(book.mappings(Some("kis")), vec![m]);
        assert!(book.mappings(Some("other")).is_empty());
    }

    #[test]
    fn bad_names_providers_lots_and_tick_rules_are_refused() {
        let mut s = samsung();
        s.name_en = "x".repeat(NAME_CHARS_MAX + 1);
        assert!(matches!(
            s.validate(),
            Err(ReferenceError::InvalidName { .. })
        ));
        s.name_en = "가".repeat(NAME_CHARS_MAX);
        assert_eq!(s.validate(), Ok(()), "64 Korean characters fit");
        s.name_ko = "a\nb".into();
        assert!(s.validate().is_err());
        let mut s = samsung();
        s.lot_size = Qty(0);
        assert_eq!(s.validate(), Err(ReferenceError::InvalidLotSize(0)));
        for (rule, ok) in [
            ("krx", true),
            ("fixed:5", true),
            ("fixed:0", false),
            ("fixed:-1", false),
            ("fixed:1000000001", false),
            ("kr", false),
        ] {
            assert_eq!(parse_tick_rule(rule).is_ok(), ok, "{rule}");
        }
        let bad = |provider: &str, external: &str| {
            Mapping {
                provider: provider.into(),
                external_code: external.into(),
                symbol: samsung().code,
            }
            .validate()
            .is_err()
        };
        assert!(bad("KIS", "1") && bad("", "1") && bad(&"k".repeat(17), "1"));
        assert!(bad("kis", "") && bad("kis", "a b") && bad("kis", &"1".repeat(33)));
        assert!(!bad("kis-ws", &"1".repeat(32)));
        assert_eq!(MarketCode::parse("kosdaq"), Ok(MarketCode::Kosdaq));
        assert!(MarketCode::parse("NYSE").is_err());
        assert!(ListingStatus::parse("halted").is_err());
    }
}
