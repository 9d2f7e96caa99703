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
    /// Add the model book (the oracle) as a timed engine too.
    pub model: bool,
}

/// A selection this build cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineRegistryError {
    /// `--compare-peers` on a build without the `peers` feature.
    #[error("--compare-peers needs kuku-bench built with the `peers` feature (on by default)")]
    PeersNotBuilt,
}

/// The engines to run, in order. With nothing else registered or selected, the model book
/// runs alone so the harness always has something to measure.
pub fn registered_engines(
    selection: EngineSelection,
) -> Result<Vec<EngineEntry>, EngineRegistryError> {
    let mut engines = Vec::new();
    // Kuku registers here, first so it leads every round:
    //     engines.push(EngineEntry::new("kuku", |flow| Box::new(crate::kuku::KukuBook::new(flow))));
    if selection.compare_peers {
        push_peers(&mut engines)?;
    }
    if selection.model || engines.is_empty() {
        engines.push(EngineEntry::new("model", |flow| {
            Box::new(ModelBook::new(flow.config().symbols))
        }));
    }
    Ok(engines)
}

#[cfg(feature = "peers")]
fn push_peers(engines: &mut Vec<EngineEntry>) -> Result<(), EngineRegistryError> {
    use crate::peers::{MatchcoreBook, OrderbookRsBook};
    engines.push(EngineEntry::new("matchcore", |flow| {
        Box::new(MatchcoreBook::new(flow))
    }));
    engines.push(EngineEntry::new("orderbook_rs", |flow| {
        Box::new(OrderbookRsBook::new(flow))
    }));
    Ok(())
}

#[cfg(not(feature = "peers"))]
fn push_peers(_engines: &mut Vec<EngineEntry>) -> Result<(), EngineRegistryError> {
    Err(EngineRegistryError::PeersNotBuilt)
}
