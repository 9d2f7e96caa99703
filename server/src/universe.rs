//! The symbol universe registered on a fresh node: a CSV of
//! `code,name,market,reference_price_krw` (the demo universe is embedded in the binary).

use kuku_engine::{Command, Market, Price, Qty, RegisterSymbol, SymbolCode, SymbolName, TickRule};

/// The demo universe shipped with Kuku (data/demo-universe.csv): illustrative prices only.
pub const DEMO_UNIVERSE: &str = include_str!("../../data/demo-universe.csv");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("universe line {line}: {message}")]
pub struct UniverseError {
    pub line: usize,
    pub message: String,
}

/// Parses a universe CSV into `RegisterSymbol` commands (KRX ticks, +-30% band, lot 1).
/// A reference price off the tick grid is floored onto it.
pub fn parse(csv: &str) -> Result<Vec<Command>, UniverseError> {
    let mut out = Vec::new();
    for (i, raw) in csv.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') || (i == 0 && raw.starts_with("code,")) {
            continue;
        }
        let err = |message: String| UniverseError { line, message };
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        let [code, name, market, price] = fields[..] else {
            return Err(err(format!("expected 4 fields, found {}", fields.len())));
        };
        let market = match market {
            "KOSPI" => Market::Kospi,
            "KOSDAQ" => Market::Kosdaq,
            other => return Err(err(format!("unknown market {other:?} (KOSPI or KOSDAQ)"))),
        };
        let price: i64 = price
            .parse()
            .map_err(|_| err(format!("the price {price:?} is not a whole number of KRW")))?;
        if price <= 0 {
            return Err(err(format!("the price {price} must be positive")));
        }
        let code = SymbolCode::new(code).ok_or_else(|| err(format!("code {code:?} too long")))?;
        let name = SymbolName::new(name)
            .or_else(|| SymbolName::new(&name[..name.floor_char_boundary(48)]))
            .ok_or_else(|| err("bad name".into()))?;
        out.push(Command::RegisterSymbol(RegisterSymbol {
            code,
            name,
            market,
            tick_rule: TickRule::Krx,
            base_price: TickRule::Krx.floor_to_grid(Price(price)),
            banded: true,
            lot_size: Qty(1),
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_universe_parses_with_samsung_first() {
        let cmds = parse(DEMO_UNIVERSE).unwrap();
        assert!(cmds.len() >= 10);
        let Command::RegisterSymbol(r) = &cmds[0] else {
            panic!()
        };
        assert_eq!(r.code.as_str(), "005930");
        assert!(TickRule::Krx.is_on_grid(r.base_price));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let e =
            parse("code,name,market,reference_price_krw\n005930,Samsung,NYSE,100\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            parse("005930,Samsung,KOSPI,abc")
                .unwrap_err()
                .message
                .contains("whole number")
        );
        assert!(parse("005930,Samsung,KOSPI").is_err());
        // Off-grid prices are floored.
        let c = parse("005930,Samsung,KOSPI,71050").unwrap();
        let Command::RegisterSymbol(r) = &c[0] else {
            panic!()
        };
        assert_eq!(r.base_price, Price(71_000));
    }
}
