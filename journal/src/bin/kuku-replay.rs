//! `kuku-replay`: inspect, verify and replay a Kuku journal directory. Thin: parses arguments,
//! calls `kuku_journal::tool`, maps the outcome to an exit code. See docs/operations.md.
//!
//! Every verb takes a journal directory or a node's data directory (its `journal/` is used).
//!
//! Exit status: 0 success; 1 error or failed verification (the message says what and where);
//! 2 the journal ends in a torn tail after the durable watermark (the output covers every frame
//! before it; `Journal::open` will cut it on the next start).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kuku_journal::StateError;
use kuku_journal::tool::{self, DumpFilter};

const EXIT_FAILURE: u8 = 1;
const EXIT_TORN_TAIL: u8 = 2;

/// Inspect, verify and replay a Kuku journal.
#[derive(Debug, Parser)]
#[command(name = "kuku-replay", version)]
struct Cli {
    /// Engine config (the journal's engine.json, or a bare EngineConfig JSON object); default:
    /// DIR/engine.json.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check CRCs, seq continuity, payloads, snapshot hashes and engine invariants.
    Verify {
        /// Journal directory, or a node's data directory.
        dir: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print commands as JSON lines: {"seq","ts","kind","account","symbol","command"}.
    Dump(DumpArgs),
    /// Rebuild the state (up to a seq): state hash, top of books, balances, trial balance.
    Replay {
        /// Journal directory, or a node's data directory.
        dir: PathBuf,
        /// Stop after this seq (inclusive).
        #[arg(long, value_name = "SEQ")]
        until: Option<u64>,
        /// Replay from genesis, ignoring snapshots.
        #[arg(long)]
        no_snapshots: bool,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Frames, commands by kind, seq and time ranges, segments and sizes.
    Stats {
        /// Journal directory, or a node's data directory.
        dir: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// Journal directory, or a node's data directory.
    dir: PathBuf,
    /// Only this seq (the command a FAIL-STOP or alarm line names); same as --from N --to N.
    #[arg(long, value_name = "SEQ", conflicts_with_all = ["from", "to"])]
    seq: Option<u64>,
    /// First seq to print.
    #[arg(long, value_name = "SEQ")]
    from: Option<u64>,
    /// Last seq to print.
    #[arg(long, value_name = "SEQ")]
    to: Option<u64>,
    /// Only commands with ts >= NS (nanoseconds since the Unix epoch).
    #[arg(long, value_name = "NS")]
    since_ts: Option<u64>,
    /// Only commands with ts <= NS.
    #[arg(long, value_name = "NS")]
    until_ts: Option<u64>,
    /// Only commands for this trading account id.
    #[arg(long, value_name = "A")]
    account: Option<u32>,
    /// Only commands about this symbol code (e.g. 005930).
    #[arg(long, value_name = "CODE")]
    symbol: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            eprintln!("kuku-replay: {}", describe(&error));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let mut stdout = io::stdout().lock();
    let config_file = cli.config.as_deref();
    let torn = |torn_tail: bool| if torn_tail { EXIT_TORN_TAIL } else { 0 };
    match cli.command {
        Command::Verify { dir, json } => {
            let dir = tool::resolve_journal_dir(&dir);
            let config = tool::resolve_config(&dir, config_file)?;
            let report = tool::verify(&dir, &config)?;
            if json {
                writeln!(stdout, "{}", report.to_json())?;
            } else {
                report.write_text(&mut stdout)?;
            }
            Ok(if report.passed() {
                torn(report.torn_tail.is_some())
            } else {
                EXIT_FAILURE
            })
        }
        Command::Dump(args) => {
            let dir = tool::resolve_journal_dir(&args.dir);
            let config = optional_config(&dir, config_file)?;
            let filter = DumpFilter {
                seq_from: args.seq.or(args.from),
                seq_to: args.seq.or(args.to),
                ts_since: args.since_ts,
                ts_until: args.until_ts,
                account: args.account,
                symbol_code: args.symbol,
            };
            let mut out = io::BufWriter::new(stdout);
            let summary = tool::dump(&dir, config.as_ref(), &filter, &mut out)?;
            out.flush()?;
            if let Some(t) = &summary.torn_tail {
                eprintln!("kuku-replay: stopped at a torn tail: {t}");
            }
            Ok(torn(summary.torn_tail.is_some()))
        }
        Command::Replay {
            dir,
            until,
            no_snapshots,
            json,
        } => {
            let dir = tool::resolve_journal_dir(&dir);
            let config = tool::resolve_config(&dir, config_file)?;
            let report = tool::replay(&dir, &config, until, !no_snapshots)?;
            if json {
                writeln!(stdout, "{}", report.to_json())?;
            } else {
                report.write_text(&mut stdout)?;
            }
            Ok(if report.invariants.is_err() {
                EXIT_FAILURE
            } else {
                torn(report.torn_tail.is_some())
            })
        }
        Command::Stats { dir, json } => {
            let dir = tool::resolve_journal_dir(&dir);
            let report = tool::stats(&dir)?;
            if json {
                writeln!(stdout, "{}", report.to_json())?;
            } else {
                report.write_text(&mut stdout)?;
            }
            Ok(torn(report.torn_tail.is_some()))
        }
    }
}

/// `dump` works without a config (it only sizes the symbol registry): use one if there is one.
fn optional_config(
    dir: &Path,
    config_file: Option<&Path>,
) -> anyhow::Result<Option<kuku_engine::EngineConfig>> {
    match tool::resolve_config(dir, config_file) {
        Ok(config) => Ok(Some(config)),
        Err(StateError::ConfigFileMissing { .. }) => Ok(None),
        Err(other) => Err(other).context("reading the engine config"),
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Operator wording for the errors a journal directory can produce.
fn describe(error: &anyhow::Error) -> String {
    let journal_error = error.chain().find_map(|cause| {
        cause
            .downcast_ref::<StateError>()
            .and_then(|e| match e {
                StateError::Journal(j) => Some(j),
                _ => None,
            })
            .or_else(|| cause.downcast_ref::<kuku_journal::JournalError>())
    });
    match journal_error {
        Some(kuku_journal::JournalError::MissingDirectory { path }) => {
            format!("journal directory {} does not exist", path.display())
        }
        Some(kuku_journal::JournalError::EmptyJournal { dir }) => format!(
            "{} is an empty journal: it holds no segment files (*.seg)",
            dir.display()
        ),
        _ => format!("{error:#}"),
    }
}
