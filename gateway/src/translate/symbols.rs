//! The symbol index a door needs: an engine [`SymbolId`] from a wire [`Code`] (requests name
//! symbols by code) and back (replies show codes).
//!
//! **Invariants**: every registered symbol whose code fits the wire (1-6 characters) is in
//! both directions; a longer code maps to `None` and cannot be named by a request.
//!
//! **Performance**: id -> code is an array index; code -> id one FxHash lookup.

use crate::protocol::Code;
use kuku_engine::readmodel::ReadModel;
use kuku_engine::{Event, SymbolId};
use rustc_hash::FxHashMap;

#[derive(Clone, Debug, Default)]
pub struct Symbols {
    codes: Vec<Option<Code>>,
    ids: FxHashMap<Code, SymbolId>,
}

impl Symbols {
    /// The symbols a read model knows.
    pub fn from_read_model(read_model: &ReadModel) -> Symbols {
        let mut symbols = Symbols::default();
        for s in read_model.symbols.values() {
            symbols.insert(s.symbol.id, s.symbol.code.as_str());
        }
        symbols
    }

    pub fn insert(&mut self, id: SymbolId, code: &str) {
        let i = id.0 as usize;
        if self.codes.len() <= i {
            self.codes.resize(i + 1, None);
        }
        let code = Code::new(code);
        self.codes[i] = code;
        if let Some(c) = code {
            self.ids.insert(c, id);
        }
    }

    /// Keeps the index current: call with every output event.
    pub fn observe(&mut self, event: &Event) {
        if let Event::SymbolRegistered { symbol } = event {
            self.insert(symbol.id, symbol.code.as_str());
        }
    }

    /// The wire code of a symbol (`None` if unknown or longer than 6 characters).
    #[inline]
    pub fn code(&self, id: SymbolId) -> Option<Code> {
        self.codes.get(id.0 as usize).copied().flatten()
    }

    /// The symbol with this wire code.
    #[inline]
    pub fn id(&self, code: Code) -> Option<SymbolId> {
        self.ids.get(&code).copied()
    }
}
