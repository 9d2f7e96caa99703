//! The pipeline under concurrent producers: results equal a sequential model fed in journal
//! order; a full ring answers Busy and loses or duplicates nothing.

use kuku_engine::testkit::{Driver, cmd};
use kuku_engine::*;
use kuku_server::pipeline::{
    self, Busy, CommandLog, Layout, LogError, MemoryLog, Origin, OutputSlot, Outputs,
    PipelineConfig,
};
use std::sync::{Arc, Barrier, Condvar, Mutex};

/// A market with one symbol and one account holding `cash`.
fn market(cash: i64) -> (Engine, AccountId) {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let a = d.funded_account("alice", cash);
    (d.engine, a)
}

fn collector() -> (Arc<Mutex<Vec<OutputSlot>>>, Outputs) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let outputs = Outputs {
        handlers: vec![(
            "test-collector",
            Box::new(move |slot: &OutputSlot, _, _| sink.lock().unwrap().push(*slot)),
        )],
        pollers: 0,
        notifiers: vec![],
    };
    (events, outputs)
}

fn small_config() -> PipelineConfig {
    PipelineConfig {
        input_ring_size: 1 << 10,
        output_ring_size: 1 << 12,
        ..PipelineConfig::default()
    }
}

#[test]
fn eight_producers_on_one_account_match_a_sequential_model_in_journal_order() {
    eight_producers_on_one_account(Layout::Staged);
}

#[test]
fn eight_producers_match_the_sequential_model_with_the_journal_fused_into_the_processor() {
    eight_producers_on_one_account(Layout::Fused);
}

fn eight_producers_on_one_account(layout: Layout) {
    let (engine, alice) = market(30_000_000);
    let genesis = engine.snapshot();
    let log = MemoryLog::default();
    let journal = Arc::clone(&log.frames);
    let (events, outputs) = collector();
    let config = PipelineConfig {
        layout,
        ..small_config()
    };
    let p = pipeline::start(config, engine, Box::new(log), outputs);

    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let mut submitter = p.submitter.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for i in 0..1_000u64 {
                    let price = 60_000 + ((t * 1_000 + i) % 50) as i64 * 100;
                    let command = cmd::limit(alice, t * 10_000 + i + 1, 1, Side::Buy, price, 1);
                    // Retry on Busy: the command was not accepted, so resending is safe.
                    let mut command = Some(command);
                    while let Some(c) = command.take() {
                        if let Err(Busy) = p_submit(&mut submitter, c.clone()) {
                            command = Some(c);
                            std::thread::yield_now();
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let status = Arc::clone(&p.status);
    drop(p); // drains and joins every stage
    assert!(!status.halted.load(std::sync::atomic::Ordering::Relaxed));

    // The sequential model: the same commands, in journal order, on a fresh copy.
    let journal = journal.lock().unwrap().clone();
    assert_eq!(journal.len(), 8_000);
    let mut model = Engine::from_snapshot(&genesis).unwrap();
    let mut expected = Vec::new();
    let mut available = 30_000_000i64;
    let mut fits = 0;
    for env in &journal {
        let before = expected.len();
        model.apply(env, &mut expected);
        let Command::PlaceOrder(o) = &env.command else {
            unreachable!()
        };
        let need = o.price.0 * o.qty.0 + o.price.0 * o.qty.0 * 150 / 1_000_000;
        let accepted = expected[before..]
            .iter()
            .any(|e| matches!(e, Event::OrderAccepted { .. }));
        assert_eq!(accepted, need <= available, "seq {}", env.seq);
        if accepted {
            available -= need;
            fits += 1;
        }
    }
    assert!(
        fits > 100 && fits < 8_000,
        "{fits} fit: the account can afford only some"
    );
    let got: Vec<Event> = events.lock().unwrap().iter().map(|s| s.event).collect();
    assert_eq!(
        got, expected,
        "the pipeline's events are the sequential model's"
    );
    let seqs: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.last)
        .map(|s| s.seq)
        .collect();
    assert_eq!(
        seqs,
        (genesis.last_seq + 1..=genesis.last_seq + 8_000).collect::<Vec<_>>()
    );
    model.check_invariants().unwrap();
}

fn p_submit(s: &mut pipeline::Submitter, c: Command) -> Result<(), Busy> {
    s.try_submit(Origin(7), c)
}

/// A log whose appends wait at a gate the test opens: the ring fills up behind it.
struct GatedLog {
    inner: MemoryLog,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl CommandLog for GatedLog {
    fn append(&mut self, seq: u64, ts: u64, command: &Command) -> Result<(), LogError> {
        let (open, cv) = &*self.gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.inner.append(seq, ts, command)
    }

    fn commit(&mut self) -> Result<(), LogError> {
        self.inner.commit()
    }
}

#[test]
fn a_full_ring_answers_busy_and_loses_nothing() {
    let (engine, alice) = market(1_000_000_000);
    let inner = MemoryLog::default();
    let journal = Arc::clone(&inner.frames);
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (events, outputs) = collector();
    let config = PipelineConfig {
        input_ring_size: 64,
        ..small_config()
    };
    let p = pipeline::start(
        config,
        engine,
        Box::new(GatedLog {
            inner,
            gate: Arc::clone(&gate),
        }),
        outputs,
    );
    let mut submitter = p.submitter.clone();
    let (mut accepted, mut busy) = (Vec::new(), 0);
    for coid in 1..=200u64 {
        match submitter.try_submit(Origin(1), cmd::limit(alice, coid, 1, Side::Buy, 70_000, 1)) {
            Ok(()) => accepted.push(coid),
            Err(Busy) => busy += 1,
        }
    }
    assert!(busy > 0, "the ring filled up");
    assert!(accepted.len() <= 65);
    assert_eq!(
        p.status.busy.load(std::sync::atomic::Ordering::Relaxed),
        busy
    );
    // Open the gate: the node serves again, and new commands are accepted.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for coid in 201..=210u64 {
        loop {
            match submitter.try_submit(Origin(1), cmd::limit(alice, coid, 1, Side::Buy, 70_000, 1))
            {
                Ok(()) => break,
                Err(Busy) => std::thread::yield_now(),
            }
        }
        accepted.push(coid);
    }
    drop(submitter);
    drop(p);
    let journal = journal.lock().unwrap();
    let keys: Vec<u64> = journal
        .iter()
        .map(|e| match &e.command {
            Command::PlaceOrder(o) => o.client_order_id.0,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        keys, accepted,
        "exactly the accepted commands, once each, in order"
    );
    let acks = events
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s.event, Event::OrderAccepted { resent: false, .. }))
        .count();
    assert_eq!(acks, accepted.len());
}

/// Records which thread appended (the layout decides it) and whether its commit syncs.
struct ThreadLog {
    syncs: bool,
    appenders: Arc<Mutex<Vec<String>>>,
}

impl CommandLog for ThreadLog {
    fn append(&mut self, _: u64, _: u64, _: &Command) -> Result<(), LogError> {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        let mut a = self.appenders.lock().unwrap();
        if !a.contains(&name) {
            a.push(name);
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), LogError> {
        Ok(())
    }

    fn commit_blocks(&self) -> bool {
        self.syncs
    }
}

#[test]
fn a_fused_layout_journals_on_the_processor_unless_the_log_commit_blocks_on_io() {
    for (syncs, thread) in [(false, "kuku-processor"), (true, "kuku-journal")] {
        let (engine, alice) = market(1_000_000_000);
        let appenders = Arc::new(Mutex::new(Vec::new()));
        let log = ThreadLog {
            syncs,
            appenders: Arc::clone(&appenders),
        };
        let (events, outputs) = collector();
        let config = PipelineConfig {
            layout: Layout::Fused,
            ..small_config()
        };
        let p = pipeline::start(config, engine, Box::new(log), outputs);
        let mut s = p.submitter.clone();
        for i in 0..10 {
            p_submit(&mut s, cmd::limit(alice, i + 1, 1, Side::Buy, 70_000, 1)).unwrap();
        }
        drop(s);
        drop(p);
        assert_eq!(
            *appenders.lock().unwrap(),
            vec![thread.to_string()],
            "syncs: {syncs}"
        );
        let done = events.lock().unwrap().iter().filter(|e| e.last).count();
        assert_eq!(done, 10, "every command applied (syncs: {syncs})");
    }
}

/// Refuses the `refuse_at`-th command it sees, as a fenced node's log refuses (a log
/// *failure* ends the process instead: `failstop.rs` tests that on a real node).
struct RefusingLog {
    appended: u64,
    refuse_at: u64,
}

impl CommandLog for RefusingLog {
    fn append(&mut self, _: u64, _: u64, _: &Command) -> Result<(), LogError> {
        self.appended += 1;
        if self.appended == self.refuse_at {
            return Err(LogError::Refused("a newer epoch exists".into()));
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}

#[test]
fn a_refusing_log_halts_the_pipeline_and_what_was_applied_before_is_still_answered() {
    for layout in [Layout::Staged, Layout::Fused] {
        let (engine, alice) = market(1_000_000_000);
        let base = engine.last_seq();
        let (events, outputs) = collector();
        let config = PipelineConfig {
            layout,
            ..small_config()
        };
        let log = RefusingLog {
            appended: 0,
            refuse_at: 50,
        };
        let p = pipeline::start(config, engine, Box::new(log), outputs);
        let mut s = p.submitter.clone();
        for i in 0..100 {
            p_submit(&mut s, cmd::limit(alice, i + 1, 1, Side::Buy, 70_000, 1)).unwrap();
        }
        drop(s);
        let status = Arc::clone(&p.status);
        drop(p);
        assert!(status.halted.load(std::sync::atomic::Ordering::Relaxed));
        let answered: Vec<u64> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.last)
            .map(|e| e.seq)
            .collect();
        let applied = status
            .applied_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            answered,
            (base + 1..=applied).collect::<Vec<_>>(),
            "{layout:?}: every applied command is answered, in order"
        );
        assert!(
            applied < base + 50,
            "{layout:?}: nothing from the refused append on"
        );
    }
}
