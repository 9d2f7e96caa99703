//! The registry of engines `kuku-bench engine` can run: the one place a new adapter is added.
//!
//! Order matters: engines run in registry order within each round (A, B, C, A, B, C, ...).

use crate::book_under_test::EngineEntry;
use crate::model::ModelBook;

/// Which engines a run wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineSelection {
    /// Add matchcore and orderbook-rs.
    pub compare_peers: bool,
    /// With `compare_peers`: orderbook-rs too (the slow peer).
    pub orderbook_rs: bool,
    /// Add the model book (the oracle) as a timed engine too.
    pub model: bool,
    /// Add Kuku with risk, ledger, positions and idempotency on (`kuku_full`).
    pub full: bool,
    /// Add Kuku on sorted levels only (`kuku_sorted`), for the ladder comparison (ADR-002).
    pub sorted_ladder: bool,
}

/// A selection this build cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineRegistryError {
    /// `--compare-peers` on a build without the `peers` feature.
    #[error("--compare-peers needs kuku-bench built with the `peers` feature (on by default)")]
    PeersNotBuilt,
}

/// The engines to run, in order: Kuku first, so it leads every round; then its variants, the
/// peers and the model as selected.
pub fn registered_engines(
    selection: EngineSelection,
) -> Result<Vec<EngineEntry>, EngineRegistryError> {
    use crate::kuku::KukuBook;
    use kuku_engine::LadderPolicy;
    let mut engines = vec![EngineEntry::new("kuku", |flow| {
        Box::new(KukuBook::new(flow, false, LadderPolicy::Auto))
    })];
    if selection.full {
        engines.push(EngineEntry::new("kuku_full", |flow| {
            Box::new(KukuBook::new(flow, true, LadderPolicy::Auto))
        }));
    }
    if selection.sorted_ladder {
        engines.push(EngineEntry::new("kuku_sorted", |flow| {
            Box::new(KukuBook::new(flow, false, LadderPolicy::SortedOnly))
        }));
    }
    if selection.compare_peers {
        push_peers(&mut engines, selection.orderbook_rs)?;
    }
    if selection.model || engines.is_empty() {
        engines.push(EngineEntry::new("model", |flow| {
            Box::new(ModelBook::new(flow.config().symbols))
        }));
    }
    Ok(engines)
}

#[cfg(feature = "peers")]
fn push_peers(
    engines: &mut Vec<EngineEntry>,
    orderbook_rs: bool,
) -> Result<(), EngineRegistryError> {
    use crate::peers::{MatchcoreBook, OrderbookRsBook};
    engines.push(EngineEntry::new("matchcore", |flow| {
        Box::new(MatchcoreBook::new(flow))
    }));
    if orderbook_rs {
        engines.push(EngineEntry::new("orderbook_rs", |flow| {
            Box::new(OrderbookRsBook::new(flow))
        }));
    }
    Ok(())
}

#[cfg(not(feature = "peers"))]
fn push_peers(
    _engines: &mut Vec<EngineEntry>,
    _orderbook_rs: bool,
) -> Result<(), EngineRegistryError> {
    Err(EngineRegistryError::PeersNotBuilt)
}
