//! The logic of `kuku-replay` (the binary only parses arguments and picks an exit code):
//! [`verify`], [`dump`], [`replay`] and [`stats`] over a journal directory. docs/operations.md
//! shows them in use.
//!
//! - `verify`: first the checks a node's start-up makes ([`Journal::inspect`]: segment headers,
//!   the watermark, damage at or before it, a journal that ends before it, a directory whose
//!   segments are gone), so it fails on whatever start-up would refuse; then every frame's CRC,
//!   padding and seq continuity (the reader), every payload decodes, every snapshot's stored
//!   hash equals the hash of the engine replayed to its seq (and of its own decoded payload),
//!   engine invariants at every snapshot and at the end. It lists the quarantine.
//! - `dump`: one JSON object per command, filtered by seq, time, account and symbol code.
//! - `replay`: the state at a seq: state hash, top of every book, balances, positions, trial
//!   balance.
//! - `stats`: frames, commands by kind, seq and time ranges, segments and sizes.
//!
//! Every verb takes a node's data directory as well as its journal directory
//! ([`resolve_journal_dir`]). Every function stops at the first damaged frame. Damage after the durable watermark is a torn
//! tail: the report covers the frames before it and carries it (`torn_tail`); damage at or before
//! the watermark is an error naming segment, offset and seq.
//!
//! **Performance**: one sequential pass over the journal (plus, for `replay` and `verify`, the
//! engine's apply per command); `dump` and `stats` decode but do not apply. `dump` allocates one
//! JSON value per printed line.
//!
//! **Known limitations**: symbol codes in `dump` are resolved by applying the RegisterSymbol
//! commands seen to a small engine with the journal's `symbols_max`; in a pruned journal, codes
//! registered before its first frame come from the newest snapshot before it, if any.
//! `verify` of a pruned journal starts at a snapshot, so frames before it are not checked.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use kuku_engine::hash::stable_hash;
use kuku_engine::{
    AccountId, Command, CommandKind, Engine, EngineConfig, Envelope, NullSink, Side, SymbolId,
};
use serde_json::{Value, json};

use crate::codec;
use crate::frame::frame_bytes;
use crate::journal::Journal;
use crate::meta_file;
use crate::reader::JournalReader;
use crate::recovery::Truncation;
use crate::segment::SEGMENT_DATA_START;
use crate::snapshot::{SnapshotFile, SnapshotStore};
use crate::state::{
    self, RecoverOptions, SnapshotBase, StateError, TornTail, journal_meta, replay_journal,
};

/// The engine config for `dir`: `config_file` if given (a sidecar or a bare `EngineConfig`
/// JSON object), else the journal's `engine.json` sidecar. A missing `dir` is reported as such
/// first (not as a missing sidecar).
pub fn resolve_config(dir: &Path, config_file: Option<&Path>) -> Result<EngineConfig, StateError> {
    if !dir.is_dir() {
        return Err(crate::JournalError::MissingDirectory {
            path: dir.to_owned(),
        }
        .into());
    }
    match config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
                op: "read",
                path: path.to_owned(),
                source,
            })?;
            meta_file::parse_config(path, &text)
        }
        None => meta_file::read_config(dir),
    }
}

/// The journal directory for `dir`: `dir` itself when it holds segments or an engine config,
/// else `dir/journal` when that is a directory (a node's data directory), else `dir`.
pub fn resolve_journal_dir(dir: &Path) -> PathBuf {
    let holds_journal = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            crate::segment::parse_segment_file_name(&name).is_some()
                || name == meta_file::ENGINE_CONFIG_FILE_NAME
        })
    });
    let nested = dir.join("journal");
    if !holds_journal && nested.is_dir() {
        nested
    } else {
        dir.to_owned()
    }
}

fn open_reader(dir: &Path) -> Result<JournalReader, StateError> {
    Ok(JournalReader::open(dir)?)
}

fn write_err(source: std::io::Error) -> StateError {
    StateError::Io {
        op: "write",
        path: PathBuf::from("<output>"),
        source,
    }
}

fn snapshot_files(dir: &Path) -> Result<Vec<SnapshotFile>, StateError> {
    match SnapshotStore::open(dir) {
        Ok(store) => Ok(store.list()?),
        Err(crate::JournalError::MissingDirectory { .. }) => Ok(Vec::new()),
        Err(other) => Err(other.into()),
    }
}

fn hex(v: u64) -> String {
    format!("{v:#018x}")
}

// ---------------------------------------------------------------------------------------------
// verify

/// The check of one snapshot file against the replayed engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCheck {
    pub path: PathBuf,
    pub seq: u64,
    /// `None`: hash, payload and invariants all agree. `Some`: what failed.
    pub failure: Option<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub dir: PathBuf,
    pub segments: usize,
    /// Frames CRC-checked, decoded and applied.
    pub frames_verified: u64,
    /// The snapshot verification started from (pruned journals only).
    pub base: Option<SnapshotBase>,
    pub seq_last: u64,
    pub seq_durable: u64,
    pub state_hash: u64,
    pub snapshots: Vec<SnapshotCheck>,
    pub torn_tail: Option<TornTail>,
    /// What start-up's recovery would cut (and quarantine): the torn tail with its extent.
    pub cut: Option<Truncation>,
    /// Quarantine directories of earlier cuts, oldest first.
    pub quarantined: Vec<PathBuf>,
    /// Every failure found (snapshot mismatches, invariant violations); empty when healthy.
    pub failures: Vec<String>,
}

impl VerifyReport {
    /// True when nothing failed (a torn tail alone is not a failure, see `torn_tail`).
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn write_text(&self, out: &mut impl Write) -> Result<(), StateError> {
        let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(write_err);
        for s in &self.snapshots {
            let status = s.failure.as_deref().unwrap_or("ok");
            w(
                out,
                format!("snapshot {} (seq {}): {status}", s.path.display(), s.seq),
            )?;
        }
        if let Some(t) = &self.torn_tail {
            w(
                out,
                format!("TORN TAIL: {t}; recovery will cut the journal here"),
            )?;
        }
        if let Some(cut) = &self.cut {
            w(out, format!("start-up will quarantine and cut: {cut}"))?;
        }
        for q in &self.quarantined {
            w(
                out,
                format!(
                    "quarantine: {} (bytes an earlier recovery cut)",
                    q.display()
                ),
            )?;
        }
        for f in &self.failures {
            w(out, format!("FAILED: {f}"))?;
        }
        let base = match &self.base {
            Some(b) => format!("snapshot {}", b.meta.seq),
            None => "genesis".to_owned(),
        };
        w(
            out,
            format!(
                "verify {}: {} | {} segments, {} frames verified from {base}, last seq {}, durable watermark {}, {} snapshots checked, state hash {}",
                self.dir.display(),
                if self.passed() { "OK" } else { "FAILED" },
                self.segments,
                self.frames_verified,
                self.seq_last,
                self.seq_durable,
                self.snapshots.len(),
                hex(self.state_hash),
            ),
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "dir": self.dir,
            "passed": self.passed(),
            "segments": self.segments,
            "frames_verified": self.frames_verified,
            "base_snapshot_seq": self.base.as_ref().map(|b| b.meta.seq),
            "seq_last": self.seq_last,
            "seq_durable": self.seq_durable,
            "state_hash": hex(self.state_hash),
            "snapshots": self.snapshots.iter().map(|s| json!({
                "path": s.path, "seq": s.seq, "ok": s.failure.is_none(), "failure": s.failure,
            })).collect::<Vec<_>>(),
            "torn_tail": self.torn_tail.as_ref().map(|t| t.to_string()),
            "cut": self.cut.as_ref().map(|c| c.to_string()),
            "quarantined": self.quarantined,
            "failures": self.failures,
        })
    }
}

/// Verifies the journal in `dir` under `config`. `Err` for what stops verification and would
/// stop a node's start-up (missing or empty journal, segments gone with traces left, config
/// mismatch, damaged durable data, a journal that ends before its watermark, an undecodable
/// payload); every other finding is in the report.
pub fn verify(dir: &Path, config: &EngineConfig) -> Result<VerifyReport, StateError> {
    let findings = Journal::inspect(dir, journal_meta(config, 0))?;
    if findings.fresh {
        return Err(crate::JournalError::EmptyJournal {
            dir: dir.to_owned(),
        }
        .into());
    }
    let reader = open_reader(dir)?;
    reader.check_meta(&journal_meta(config, 0))?;
    let (mut engine, base) = verify_base(dir, &reader, config)?;
    let mut report = VerifyReport {
        dir: dir.to_owned(),
        segments: reader.segments().count(),
        frames_verified: 0,
        base,
        seq_last: 0,
        seq_durable: reader.durable_watermark(),
        state_hash: 0,
        snapshots: Vec::new(),
        torn_tail: None,
        cut: findings.cut,
        quarantined: findings.quarantined,
        failures: Vec::new(),
    };
    let store = SnapshotStore::open(dir).ok();
    for file in snapshot_files(dir)? {
        if file.seq <= engine.last_seq() {
            continue;
        }
        let outcome = replay_journal(&reader, &mut engine, file.seq, &mut NullSink)?;
        report.frames_verified += outcome.commands;
        report.torn_tail = report.torn_tail.take().or(outcome.torn_tail);
        let failure = if engine.last_seq() < file.seq {
            Some(format!(
                "the journal ends at seq {} before the snapshot's seq: the snapshot is ahead of the journal",
                engine.last_seq()
            ))
        } else {
            store
                .as_ref()
                .and_then(|store| check_snapshot(store, &file, &engine, config).err())
        };
        if let Some(f) = &failure {
            report
                .failures
                .push(format!("snapshot {}: {f}", file.path.display()));
        }
        report.snapshots.push(SnapshotCheck {
            path: file.path,
            seq: file.seq,
            failure,
        });
    }
    let outcome = replay_journal(&reader, &mut engine, u64::MAX, &mut NullSink)?;
    report.frames_verified += outcome.commands;
    report.torn_tail = report.torn_tail.take().or(outcome.torn_tail);
    if engine.last_seq() == 0 {
        return Err(StateError::NoFrames {
            dir: dir.to_owned(),
        });
    }
    if let Err(e) = engine.check_invariants() {
        report.failures.push(format!(
            "engine invariants broken after seq {}: {e}",
            engine.last_seq()
        ));
    }
    report.seq_last = engine.last_seq();
    report.state_hash = engine.state_hash();
    Ok(report)
}

/// Genesis, or for a pruned journal the snapshot right before its first frame (else the newest
/// usable one).
fn verify_base(
    dir: &Path,
    reader: &JournalReader,
    config: &EngineConfig,
) -> Result<(Engine, Option<SnapshotBase>), StateError> {
    let seq_first = reader.seq_first();
    if seq_first == 1 {
        return Ok((Engine::new(*config), None));
    }
    let (engine, base, _) = match state::restore_base(dir, reader, config, seq_first - 1, true) {
        Err(StateError::NoReplayBase { .. }) => {
            state::restore_base(dir, reader, config, u64::MAX, true)?
        }
        other => other?,
    };
    Ok((engine, base))
}

/// One snapshot file against the engine replayed to its seq.
fn check_snapshot(
    store: &SnapshotStore,
    file: &SnapshotFile,
    engine: &Engine,
    config: &EngineConfig,
) -> Result<(), String> {
    let snapshot = store.read(&file.path).map_err(|e| e.to_string())?;
    let meta = snapshot.meta;
    let expected = journal_meta(config, 0);
    if meta.engine_logic_version != expected.engine_logic_version
        || meta.capacities_hash != expected.capacities_hash
    {
        return Err(format!(
            "written by engine-logic version {} / capacities hash {}, the journal is {} / {}",
            meta.engine_logic_version,
            hex(meta.capacities_hash),
            expected.engine_logic_version,
            hex(expected.capacities_hash)
        ));
    }
    let replayed = engine.state_hash();
    if replayed != meta.state_hash {
        return Err(format!(
            "stored state hash {} differs from the replayed engine's {}",
            hex(meta.state_hash),
            hex(replayed)
        ));
    }
    let decoded = codec::decode_snapshot(&snapshot.payload)
        .map_err(|e| format!("payload does not decode: {e}"))?;
    let payload_hash = stable_hash(&decoded);
    if payload_hash != meta.state_hash {
        return Err(format!(
            "payload hashes to {}, the header says {}",
            hex(payload_hash),
            hex(meta.state_hash)
        ));
    }
    engine
        .check_invariants()
        .map_err(|e| format!("engine invariants broken at seq {}: {e}", file.seq))
}

// ---------------------------------------------------------------------------------------------
// dump

/// Which commands `dump` prints (all conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpFilter {
    pub seq_from: Option<u64>,
    pub seq_to: Option<u64>,
    /// Nanoseconds since the Unix epoch, inclusive.
    pub ts_since: Option<u64>,
    pub ts_until: Option<u64>,
    pub account: Option<u32>,
    /// A symbol code such as "005930".
    pub symbol_code: Option<String>,
}

/// What `dump` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSummary {
    pub frames_read: u64,
    pub lines: u64,
    pub torn_tail: Option<TornTail>,
}

/// Maps symbol codes to ids the way the engine assigns them: by applying the RegisterSymbol
/// commands seen to an engine that has the journal's symbol capacity and nothing else.
struct SymbolRegistry {
    engine: Engine,
    seq: u64,
}

impl SymbolRegistry {
    fn new(config: &EngineConfig) -> SymbolRegistry {
        let tiny = EngineConfig {
            orders_max: 1,
            accounts_max: 1,
            orders_per_account_day_max: 1,
            keys_max: 1,
            positions_max: 1,
            open_tx_max: 1,
            closed_tx_window_max: 1,
            ..*config
        };
        SymbolRegistry {
            engine: Engine::new(tiny),
            seq: 0,
        }
    }

    fn register(&mut self, command: &Command) {
        if let Command::RegisterSymbol(_) = command {
            self.seq += 1;
            let envelope = Envelope {
                seq: self.seq,
                ts: 0,
                command: command.clone(),
            };
            self.engine.apply(&envelope, &mut NullSink);
        }
    }

    fn code(&self, id: SymbolId) -> Option<String> {
        self.engine.symbol(id).map(|s| s.code.as_str().to_owned())
    }

    /// The symbol codes a command is about (its own code for RegisterSymbol).
    fn code_of(&self, command: &Command) -> Option<String> {
        match command {
            Command::RegisterSymbol(r) => Some(r.code.as_str().to_owned()),
            other => other.symbol().and_then(|id| self.code(id)),
        }
    }

    /// Seeds the registry from the newest decodable snapshot before a pruned journal's start.
    fn seed_from_snapshots(&mut self, dir: &Path, seq_first: u64) -> Result<(), StateError> {
        let Ok(store) = SnapshotStore::open(dir) else {
            return Ok(());
        };
        for file in store.list()?.into_iter().rev() {
            if file.seq >= seq_first {
                continue;
            }
            let Ok(snapshot) = store.read(&file.path) else {
                continue;
            };
            let Ok(decoded) = codec::decode_snapshot(&snapshot.payload) else {
                continue;
            };
            for s in &decoded.symbols {
                self.register(&Command::RegisterSymbol(kuku_engine::RegisterSymbol {
                    code: s.symbol.code,
                    name: s.symbol.name,
                    market: s.symbol.market,
                    tick_rule: s.symbol.tick_rule,
                    base_price: s.symbol.base_price,
                    banded: s.symbol.banded,
                    lot_size: s.symbol.lot_size,
                }));
            }
            return Ok(());
        }
        Ok(())
    }
}

/// Prints every command that passes `filter` as one JSON object per line:
/// `{"seq":..,"ts":..,"kind":"PlaceOrder","account":1,"symbol":"005930","command":{..}}`.
/// `config` sizes the symbol registry (the default config if `None`).
pub fn dump(
    dir: &Path,
    config: Option<&EngineConfig>,
    filter: &DumpFilter,
    out: &mut impl Write,
) -> Result<DumpSummary, StateError> {
    let reader = open_reader(dir)?;
    let mut registry = SymbolRegistry::new(&config.copied().unwrap_or_default());
    if reader.seq_first() > 1 {
        registry.seed_from_snapshots(dir, reader.seq_first())?;
    }
    let mut summary = DumpSummary {
        frames_read: 0,
        lines: 0,
        torn_tail: None,
    };
    let seq_to = filter.seq_to.unwrap_or(u64::MAX);
    for item in reader.frames_from(reader.seq_first())? {
        let frame = match item {
            Ok(frame) => frame,
            Err(error) => {
                summary.torn_tail = Some(state::torn_tail_or_error(&reader, error)?);
                break;
            }
        };
        if frame.seq > seq_to {
            break;
        }
        summary.frames_read += 1;
        let envelope = codec::decode_envelope(&frame).map_err(|source| StateError::Payload {
            seq: frame.seq,
            source,
        })?;
        registry.register(&envelope.command);
        let code = registry.code_of(&envelope.command);
        if !passes(filter, &envelope, code.as_deref()) {
            continue;
        }
        // Written field by field so every line reads seq, ts, kind first (a JSON map would sort
        // its keys).
        let command = serde_json::to_string(&envelope.command).map_err(|e| StateError::Io {
            op: "serialize",
            path: PathBuf::from("<output>"),
            source: e.into(),
        })?;
        let line = format!(
            r#"{{"seq":{},"ts":{},"kind":"{:?}","account":{},"symbol":{},"command":{command}}}"#,
            envelope.seq,
            envelope.ts,
            envelope.command.kind(),
            json!(envelope.command.account().map(|a| a.0)),
            json!(code),
        );
        writeln!(out, "{line}").map_err(write_err)?;
        summary.lines += 1;
    }
    if summary.frames_read == 0 && summary.torn_tail.is_none() {
        return Err(StateError::NoFrames {
            dir: dir.to_owned(),
        });
    }
    Ok(summary)
}

fn passes(filter: &DumpFilter, envelope: &Envelope, code: Option<&str>) -> bool {
    let command = &envelope.command;
    filter.seq_from.is_none_or(|s| envelope.seq >= s)
        && filter.ts_since.is_none_or(|t| envelope.ts >= t)
        && filter.ts_until.is_none_or(|t| envelope.ts <= t)
        && filter
            .account
            .is_none_or(|a| command.account() == Some(AccountId(a)))
        && filter
            .symbol_code
            .as_deref()
            .is_none_or(|want| code == Some(want))
}

// ---------------------------------------------------------------------------------------------
// replay

/// Best bid and ask of one book.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BookTop {
    pub symbol: u32,
    pub code: String,
    /// (price, qty, orders)
    pub bid: Option<(i64, i64, u32)>,
    pub ask: Option<(i64, i64, u32)>,
    pub last_trade_price: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountRow {
    pub account: u32,
    pub owner: String,
    pub cash: i64,
    pub hold: i64,
    pub available: i64,
    pub positions: Vec<PositionRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PositionRow {
    pub symbol: String,
    pub qty: i64,
    pub hold: i64,
    pub cost_basis: i64,
    pub realized_pnl: i64,
}

/// The state `replay` rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub dir: PathBuf,
    pub base: Option<SnapshotBase>,
    pub commands_replayed: u64,
    pub seq_last: u64,
    pub state_hash: u64,
    pub books: Vec<BookTop>,
    pub accounts: Vec<AccountRow>,
    /// Sum of every KRW balance (0 when the ledger balances).
    pub trial_balance_krw: i128,
    /// Per symbol code: sum of every share balance (0 when the ledger balances).
    pub trial_balance_shares: Vec<(String, i128)>,
    pub invariants: Result<(), String>,
    pub torn_tail: Option<TornTail>,
}

/// Rebuilds the state of the journal in `dir` up to `seq_until` (the whole journal if `None`).
pub fn replay(
    dir: &Path,
    config: &EngineConfig,
    seq_until: Option<u64>,
    use_snapshots: bool,
) -> Result<ReplayReport, StateError> {
    let options = RecoverOptions {
        seq_until,
        use_snapshots,
    };
    let (engine, info) = state::recover_engine_with(dir, config, options)?;
    if info.seq_last == 0 {
        return Err(StateError::NoFrames {
            dir: dir.to_owned(),
        });
    }
    Ok(ReplayReport {
        dir: dir.to_owned(),
        base: info.base,
        commands_replayed: info.commands_replayed,
        seq_last: info.seq_last,
        state_hash: engine.state_hash(),
        books: book_tops(&engine),
        accounts: account_rows(&engine),
        trial_balance_krw: engine.ledger().trial_balance().0,
        trial_balance_shares: engine
            .ledger()
            .trial_balance()
            .1
            .into_iter()
            .map(|(id, sum)| (symbol_code(&engine, id), sum))
            .collect(),
        invariants: engine.check_invariants(),
        torn_tail: info.torn_tail,
    })
}

fn symbol_code(engine: &Engine, id: SymbolId) -> String {
    engine
        .symbol(id)
        .map_or_else(|| format!("#{}", id.0), |s| s.code.as_str().to_owned())
}

fn book_tops(engine: &Engine) -> Vec<BookTop> {
    engine
        .symbols()
        .map(|s| {
            let book = engine.book(s.id);
            let top = |side| {
                book.and_then(|b| b.best(side))
                    .map(|l| (l.price.0, l.qty.0, l.count))
            };
            BookTop {
                symbol: s.id.0,
                code: s.code.as_str().to_owned(),
                bid: top(Side::Buy),
                ask: top(Side::Sell),
                last_trade_price: s.last_trade_price.map(|p| p.0),
            }
        })
        .collect()
}

fn account_rows(engine: &Engine) -> Vec<AccountRow> {
    let ledger = engine.ledger();
    let mut rows: Vec<AccountRow> = ledger
        .accounts()
        .iter()
        .map(|a| AccountRow {
            account: a.id.0,
            owner: a.owner.as_str().to_owned(),
            cash: a.cash().0,
            hold: a.cash_hold().0,
            available: a.available().0,
            positions: Vec::new(),
        })
        .collect();
    rows.sort_by_key(|r| r.account);
    for p in ledger.positions() {
        if let Ok(i) = rows.binary_search_by_key(&p.account.0, |r| r.account) {
            rows[i].positions.push(PositionRow {
                symbol: symbol_code(engine, p.symbol),
                qty: p.qty().0,
                hold: p.hold().0,
                cost_basis: p.cost_basis.0,
                realized_pnl: p.realized_pnl.0,
            });
        }
    }
    rows
}

impl ReplayReport {
    pub fn write_text(&self, out: &mut impl Write) -> Result<(), StateError> {
        let mut text = String::new();
        let from = match &self.base {
            Some(b) => format!("snapshot at seq {}", b.meta.seq),
            None => "genesis".to_owned(),
        };
        text += &format!(
            "replayed {}: {} commands from {from}\nlast seq: {}\nstate hash: {}\n",
            self.dir.display(),
            self.commands_replayed,
            self.seq_last,
            hex(self.state_hash)
        );
        if let Some(t) = &self.torn_tail {
            text += &format!("torn tail (not replayed): {t}\n");
        }
        text += "books (best bid | best ask: price x qty (orders)):\n";
        let side = |s: Option<(i64, i64, u32)>| {
            s.map_or("-".to_owned(), |(p, q, n)| format!("{p} x {q} ({n})"))
        };
        for b in &self.books {
            text += &format!(
                "  {} (#{}): {} | {}\n",
                b.code,
                b.symbol,
                side(b.bid),
                side(b.ask)
            );
        }
        text += "accounts (cash, hold, available):\n";
        for a in &self.accounts {
            text += &format!(
                "  {} ({}): cash {} hold {} available {}\n",
                a.account, a.owner, a.cash, a.hold, a.available
            );
            for p in &a.positions {
                text += &format!(
                    "    {}: qty {} hold {} cost basis {} realized pnl {}\n",
                    p.symbol, p.qty, p.hold, p.cost_basis, p.realized_pnl
                );
            }
        }
        text += &format!("trial balance: KRW {}", self.trial_balance_krw);
        for (code, sum) in &self.trial_balance_shares {
            text += &format!(", {code} {sum}");
        }
        text += &format!(
            "\ninvariants: {}\n",
            match &self.invariants {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("BROKEN: {e}"),
            }
        );
        out.write_all(text.as_bytes()).map_err(write_err)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "dir": self.dir,
            "base_snapshot_seq": self.base.as_ref().map(|b| b.meta.seq),
            "commands_replayed": self.commands_replayed,
            "seq_last": self.seq_last,
            "state_hash": hex(self.state_hash),
            "books": self.books,
            "accounts": self.accounts,
            "trial_balance": {
                // i128 as strings: JSON numbers are not that wide.
                "krw": self.trial_balance_krw.to_string(),
                "shares": self.trial_balance_shares.iter()
                    .map(|(code, sum)| (code.clone(), Value::String(sum.to_string())))
                    .collect::<serde_json::Map<_, _>>(),
            },
            "invariants_ok": self.invariants.is_ok(),
            "invariants_error": self.invariants.as_ref().err(),
            "torn_tail": self.torn_tail.as_ref().map(|t| t.to_string()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// stats

/// One segment in `stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SegmentRow {
    pub path: PathBuf,
    pub first_seq: u64,
    pub frames: u64,
    /// Header pages + frames, padding included.
    pub bytes_used: u64,
    pub file_bytes: u64,
}

/// What `stats` counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsReport {
    pub dir: PathBuf,
    pub frames: u64,
    pub commands_by_kind: BTreeMap<CommandKind, u64>,
    pub seq_first: Option<u64>,
    pub seq_last: Option<u64>,
    pub seq_durable: u64,
    pub ts_first: Option<u64>,
    pub ts_last: Option<u64>,
    pub ts_min: Option<u64>,
    pub ts_max: Option<u64>,
    pub payload_bytes: u64,
    /// Frames as stored: header, payload and padding.
    pub frame_bytes: u64,
    pub segments: Vec<SegmentRow>,
    pub snapshots: Vec<SnapshotFile>,
    pub torn_tail: Option<TornTail>,
}

/// Counts the journal in `dir` (decodes every payload; applies nothing).
pub fn stats(dir: &Path) -> Result<StatsReport, StateError> {
    let reader = open_reader(dir)?;
    let mut segments: Vec<SegmentRow> = reader
        .segments()
        .map(|(path, first_seq)| SegmentRow {
            file_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
            path: path.to_owned(),
            first_seq,
            frames: 0,
            bytes_used: SEGMENT_DATA_START as u64,
        })
        .collect();
    let mut report = StatsReport {
        dir: dir.to_owned(),
        frames: 0,
        commands_by_kind: BTreeMap::new(),
        seq_first: None,
        seq_last: None,
        seq_durable: reader.durable_watermark(),
        ts_first: None,
        ts_last: None,
        ts_min: None,
        ts_max: None,
        payload_bytes: 0,
        frame_bytes: 0,
        segments: Vec::new(),
        snapshots: snapshot_files(dir)?,
        torn_tail: None,
    };
    for item in reader.frames_from(reader.seq_first())? {
        let frame = match item {
            Ok(frame) => frame,
            Err(error) => {
                report.torn_tail = Some(state::torn_tail_or_error(&reader, error)?);
                break;
            }
        };
        let command =
            codec::decode_command(frame.payload).map_err(|source| StateError::Payload {
                seq: frame.seq,
                source,
            })?;
        *report.commands_by_kind.entry(command.kind()).or_default() += 1;
        report.frames += 1;
        report.seq_first.get_or_insert(frame.seq);
        report.seq_last = Some(frame.seq);
        report.ts_first.get_or_insert(frame.ts);
        report.ts_last = Some(frame.ts);
        report.ts_min = Some(report.ts_min.map_or(frame.ts, |t| t.min(frame.ts)));
        report.ts_max = Some(report.ts_max.map_or(frame.ts, |t| t.max(frame.ts)));
        let stored = frame_bytes(frame.payload.len()) as u64;
        report.payload_bytes += frame.payload.len() as u64;
        report.frame_bytes += stored;
        // Segments are sorted by first seq: the frame is in the last one starting at or before it.
        let index = segments.partition_point(|s| s.first_seq <= frame.seq);
        if let Some(row) = index.checked_sub(1).and_then(|i| segments.get_mut(i)) {
            row.frames += 1;
            row.bytes_used += stored;
        }
    }
    if report.frames == 0 && report.torn_tail.is_none() {
        return Err(StateError::NoFrames {
            dir: dir.to_owned(),
        });
    }
    report.segments = std::mem::take(&mut segments);
    Ok(report)
}

impl StatsReport {
    pub fn write_text(&self, out: &mut impl Write) -> Result<(), StateError> {
        let mut text = format!("journal {}\n", self.dir.display());
        let range = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "-".to_owned(),
        };
        text += &format!(
            "frames: {}\nseq: {} (durable watermark {})\nts (ns): first..last {}, min..max {}\n",
            self.frames,
            range(self.seq_first, self.seq_last),
            self.seq_durable,
            range(self.ts_first, self.ts_last),
            range(self.ts_min, self.ts_max),
        );
        let per_frame = |bytes: u64| bytes as f64 / self.frames.max(1) as f64;
        text += &format!(
            "bytes: payload {} ({:.1}/frame), frames {} ({:.1}/frame incl. 24-byte header and padding)\n",
            self.payload_bytes,
            per_frame(self.payload_bytes),
            self.frame_bytes,
            per_frame(self.frame_bytes)
        );
        text += "commands by kind:\n";
        let mut kinds: Vec<_> = self.commands_by_kind.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (kind, count) in kinds {
            text += &format!("  {:<20} {count}\n", format!("{kind:?}"));
        }
        text += &format!("segments: {}\n", self.segments.len());
        for s in &self.segments {
            text += &format!(
                "  {}: first seq {}, {} frames, {} of {} bytes used\n",
                s.path.display(),
                s.first_seq,
                s.frames,
                s.bytes_used,
                s.file_bytes
            );
        }
        text += &format!("snapshots: {}\n", self.snapshots.len());
        for s in &self.snapshots {
            text += &format!(
                "  {}: seq {}, {} bytes\n",
                s.path.display(),
                s.seq,
                s.file_bytes
            );
        }
        if let Some(t) = &self.torn_tail {
            text += &format!("TORN TAIL: {t}\n");
        }
        out.write_all(text.as_bytes()).map_err(write_err)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "dir": self.dir,
            "frames": self.frames,
            "commands_by_kind": self.commands_by_kind.iter()
                .map(|(k, v)| (format!("{k:?}"), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "seq_first": self.seq_first,
            "seq_last": self.seq_last,
            "seq_durable": self.seq_durable,
            "ts_first": self.ts_first,
            "ts_last": self.ts_last,
            "ts_min": self.ts_min,
            "ts_max": self.ts_max,
            "payload_bytes": self.payload_bytes,
            "frame_bytes": self.frame_bytes,
            "bytes_per_frame": self.frame_bytes as f64 / self.frames.max(1) as f64,
            "segments": self.segments,
            "snapshots": self.snapshots.iter()
                .map(|s| json!({"path": s.path, "seq": s.seq, "file_bytes": s.file_bytes}))
                .collect::<Vec<_>>(),
            "torn_tail": self.torn_tail.as_ref().map(|t| t.to_string()),
        })
    }
}
